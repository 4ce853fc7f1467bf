"""Write use cases of health specs: apply, delete, enable and sync them from a folder (admission
validation and the rule of who may change a folder-synced spec live here)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import ApplicationError, Conflict
from apps.health.checks import REGISTRY
from apps.health.models import CheckResult, HealthCheck, HealthSpec
from apps.health.specs import SPEC_NAME_PATTERN, document_parse, document_validate
from apps.health.streams import STREAMS

logger = logging.getLogger(__name__)

SPEC_FILE_SUFFIXES = (".yaml", ".yml", ".json")


# Specs -----------------------------------------------------------------------------------------

def health_spec_validate(*, name: str, document: str | dict) -> tuple[dict, str, str]:
    """(normalised document, source text, format), or ApplicationError with field-level errors."""
    data, source, fmt, errors = document_parse(document)
    if not errors:
        normalised, errors = document_validate(data)
    if not errors and normalised.get("name") not in (None, name):
        errors = {"name": [f"The document names spec {normalised['name']!r}, not {name!r}."]}
    if not isinstance(name, str) or not re.fullmatch(SPEC_NAME_PATTERN, name):
        # The name goes into URLs (the gate), file names and metric labels: keep it plain.
        errors = {"name": ["Use 1 to 100 letters, digits, '.', '_' or '-', starting with a letter or digit."],
                  **errors}
    if errors:
        raise ApplicationError("The health spec is invalid.", errors=errors)
    return normalised, source, fmt


def health_spec_ensure_editable(*, spec: HealthSpec | None, document: str | dict | None,
                                managed_by: str | None = None) -> None:
    """Conflict when `document` may not replace `spec`'s (None: when `spec` may not be deleted).

    A spec synced from a folder belongs to its files: only that folder's sync (`managed_by`) may
    change its document or delete it, or the next sync would silently undo the change. Pausing or
    resuming it with the document unchanged is fine from admin or the API (`managed_by` None): the
    sync leaves `enabled` alone.
    """
    folder = spec.managed_by if spec is not None else ""
    if not folder or managed_by == folder:
        return
    if document is not None and managed_by is None:
        data, _, _, errors = document_parse(document)
        normalised, errors = (None, errors) if errors else document_validate(data)
        if not errors and normalised == spec.document:
            return
    raise Conflict(f"Spec {spec.name!r} is managed by the files in {folder}; change it there.")


def _definition(check: dict) -> tuple:
    return check["type"], check["params"]


def _pinned_host(check: dict, current: HealthCheck | None) -> str:
    """The host whose runner may run `check` ("" : any). Named in the spec, else a check that reads
    local files stays on the host where it was first declared (this one, for a new check)."""
    if check.get("host"):
        return check["host"]
    check_type = REGISTRY.get(check["type"])
    if check_type is None or not check_type.host_local:
        return ""
    if current is not None and current.host:
        return current.host
    return settings.CASEHUB_HOST_NAME


@transaction.atomic
def health_spec_apply(*, name: str, document: str | dict, enabled: bool | None = None,
                      managed_by: str | None = None) -> tuple[HealthSpec, str]:
    """Validate and store a spec, and sync its checks. Returns (spec, "created"|"updated"|"unchanged").

    `managed_by` is the folder whose sync applies the spec (None: admin, API, code). Checks
    removed from the document are deleted with their results; a check whose type or parameters
    changed starts over (state and results cleared, runs at once); a new check runs at once.
    Nothing is written when the document is invalid or the spec belongs to another folder.
    """
    spec = HealthSpec.objects.select_for_update().filter(name=name).first()
    health_spec_ensure_editable(spec=spec, document=document, managed_by=managed_by)
    normalised, source, fmt = health_spec_validate(name=name, document=document)
    if spec is not None and spec.managed_by and managed_by != spec.managed_by:
        # Only `enabled` changes (see health_spec_ensure_editable): the file stays the source text.
        source, fmt = spec.source, spec.source_format
    now = timezone.now()
    action = "created" if spec is None else "updated"
    if spec is None:
        spec = HealthSpec(name=name)
    elif (spec.document == normalised and spec.source == source
          and (enabled is None or enabled == spec.enabled)
          and (managed_by is None or managed_by == spec.managed_by)):
        return spec, "unchanged"
    resumed = action == "updated" and enabled is True and not spec.enabled
    spec.source, spec.source_format, spec.document = source, fmt, normalised
    if enabled is not None:
        spec.enabled = enabled
    if managed_by is not None:
        spec.managed_by = managed_by
    try:
        with transaction.atomic():
            spec.save()
    except IntegrityError as exc:  # another request created the same name a moment ago
        raise Conflict(f"Spec {name!r} was just created by someone else; apply again.") from exc

    # Lock the checks first (in id order, as the runner does): a runner writing a result for one of
    # them finishes before this edit deletes results, and sees the new definition when it comes after.
    existing = ({c.name: c for c in spec.checks.select_for_update().order_by("id")}
                if action == "updated" else {})
    wanted = {c["name"]: c for c in normalised["checks"]}
    removed = [c.id for n, c in existing.items() if n not in wanted]
    if removed:
        HealthCheck.objects.filter(id__in=removed).delete()  # results go by cascade
    to_create, to_update, restarted = [], [], []
    for check_name, c in wanted.items():
        current = existing.get(check_name)
        if current is None:
            to_create.append(HealthCheck(
                spec=spec, name=check_name, type=c["type"], params=c["params"], interval_s=c["interval"],
                timeout_s=c["timeout"], grace_period_s=c["grace_period"], grace_started_at=now,
                next_run_at=now, host=_pinned_host(c, None),
            ))
            continue
        if resumed:  # back from a pause: run at once, with a fresh grace window
            current.grace_started_at = current.next_run_at = now
        if _definition(c) != (current.type, current.params):
            current.type, current.params, current.state = c["type"], c["params"], {}
            current.last_status, current.last_duration_ms, current.last_run_at = "", None, None
            current.grace_started_at = current.next_run_at = now
            restarted.append(current.id)
        # Moving a check to another host keeps its state: each host's offsets are kept apart.
        current.host = _pinned_host(c, current)
        current.interval_s, current.timeout_s, current.grace_period_s = (
            c["interval"], c["timeout"], c["grace_period"])
        current.next_run_at = min(current.next_run_at, now + timedelta(seconds=c["interval"]))
        to_update.append(current)
    if restarted:
        CheckResult.objects.filter(health_check_id__in=restarted).delete()
    HealthCheck.objects.bulk_create(to_create)
    HealthCheck.objects.bulk_update(to_update, [
        "type", "params", "state", "last_status", "last_duration_ms", "last_run_at", "grace_started_at",
        "next_run_at", "interval_s", "timeout_s", "grace_period_s", "host",
    ])
    if removed or restarted:
        stale = removed + restarted
        transaction.on_commit(lambda: STREAMS.close_many(stale))
    return spec, action


@transaction.atomic
def health_spec_delete(*, spec: HealthSpec, managed_by: str | None = None) -> None:
    """Delete a spec with its checks and results; `managed_by` as in health_spec_apply."""
    health_spec_ensure_editable(spec=spec, document=None, managed_by=managed_by)
    # Locked like in health_spec_apply: no runner can add a result between the cascade's steps.
    check_ids = list(spec.checks.select_for_update().order_by("id").values_list("id", flat=True))
    spec.delete()  # checks and results go by cascade
    transaction.on_commit(lambda: STREAMS.close_many(check_ids))


@transaction.atomic
def health_spec_set_enabled(*, spec: HealthSpec, enabled: bool) -> HealthSpec:
    spec.enabled = enabled
    spec.save(update_fields=["enabled", "updated_at"])
    if enabled:
        # Back from a pause: run at once, with a fresh grace window.
        now = timezone.now()
        spec.checks.update(next_run_at=now, grace_started_at=now)
    return spec


@dataclass
class FileReport:
    path: str
    spec: str
    action: str  # created, updated, unchanged, invalid, deleted
    errors: dict = field(default_factory=dict)


def health_specs_sync_dir(*, directory: str | Path) -> list[FileReport]:
    """Apply every spec file of a folder (GitOps style) and delete the specs whose files are gone.

    Each file is applied in its own transaction: one invalid file is reported and keeps its
    last good version, the others still apply. The spec name is the document's `name` or the
    file name without its extension.
    """
    folder = Path(directory).resolve()
    if not folder.is_dir():
        raise ApplicationError(f"{folder} is not a directory.", errors={"directory": ["Not a directory."]})
    reports, seen = [], set()
    for path in sorted(p for p in folder.iterdir() if p.suffix in SPEC_FILE_SUFFIXES and p.is_file()):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            # Unreadable: reported like an invalid file, and its spec (if any) keeps its last version.
            seen.add(path.stem)
            reports.append(FileReport(str(path), path.stem, "invalid", {"document": [f"Cannot read: {exc}"]}))
            continue
        data, _, _, _ = document_parse(text)
        name = data.get("name") if isinstance(data, dict) and isinstance(data.get("name"), str) else path.stem
        if name in seen:
            reports.append(FileReport(str(path), name, "invalid",
                                      {"name": [f"Another file here already defines spec {name!r}."]}))
            continue
        seen.add(name)
        other = HealthSpec.objects.filter(name=name).exclude(managed_by=str(folder)).first()
        if other is not None:
            where = other.managed_by or "admin"
            reports.append(FileReport(str(path), name, "invalid",
                                      {"name": [f"Spec {name!r} already exists, managed by {where}."]}))
            continue
        try:
            _, action = health_spec_apply(name=name, document=text, managed_by=str(folder))
        except ApplicationError as exc:
            reports.append(FileReport(str(path), name, "invalid", exc.errors))
            continue
        reports.append(FileReport(str(path), name, action))
    for spec in HealthSpec.objects.filter(managed_by=str(folder)).exclude(name__in=seen):
        health_spec_delete(spec=spec, managed_by=str(folder))
        reports.append(FileReport(str(folder / spec.name), spec.name, "deleted"))
    return reports
