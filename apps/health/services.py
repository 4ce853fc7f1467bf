"""Write use cases of the health app: apply/delete specs (admission validation and the rule of who
may change a folder-synced spec live here) and run checks (leases, a thread pool with per-check
timeouts, results written in bulk).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction
from django.utils import timezone

from apps.core.errors import ApplicationError, Conflict
from apps.health import leases
from apps.health.checks import REGISTRY, CheckOutcome
from apps.health.checks.base import CheckContext
from apps.health.models import RESULTS_KEPT, CheckResult, CheckStatus, HealthCheck, HealthSpec
from apps.health.specs import SPEC_NAME_PATTERN, document_parse, document_validate
from apps.health.streams import STREAMS

logger = logging.getLogger(__name__)

SPEC_FILE_SUFFIXES = (".yaml", ".yml", ".json")
# A lease is taken for the longest timeout of its chunk (the runner confirms every lease of a chunk
# only once the whole chunk is done) plus this margin; a runner that dies blocks its checks no longer.
LEASE_RUN_MARGIN_MS = 5_000
# Confirming a lease extends it by this much: time to write the results.
LEASE_WRITE_MS = 15_000


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


# Runner ----------------------------------------------------------------------------------------
#
# A run claims checks before it runs them, in one transaction: it locks the candidate rows (due
# ones with SKIP LOCKED, so concurrent runners split the due set), leases each in Redis (the lease
# keeps one run of a check at a time, "run now" included), and for the leased rows bumps `claim`
# and, for a scheduled run, advances `next_run_at` on the check's own grid. A check leased
# elsewhere keeps its due time and is claimed by the first tick after that lease ends. A run claims
# at most HEALTH_MAX_THREADS checks at once (all of them run concurrently), so a lease never waits
# for an earlier chunk to finish; the result is written only if the claim is still the check's
# latest, and never touches the schedule.

@dataclass
class RunReport:
    ran: int = 0
    leased_elsewhere: int = 0
    discarded: int = 0
    wall_s: float = 0.0
    results: list[CheckResult] = field(default_factory=list)

    def add(self, part: RunReport) -> None:
        self.ran += part.ran
        self.leased_elsewhere += part.leased_elsewhere
        self.discarded += part.discarded
        self.results.extend(part.results)


@dataclass
class CheckExecution:
    """What one run of a check produced, before it is written."""

    outcome: CheckOutcome
    duration_ms: float


@dataclass
class Claim:
    """Checks a runner claimed (and holds the leases of), and those it found leased by another."""

    checks: list[HealthCheck] = field(default_factory=list)
    tokens: dict[int, str] = field(default_factory=dict)
    leased_elsewhere: list[int] = field(default_factory=list)


# The first point of the check's grid (its previous due time + k * interval) after `now`: a late
# tick does not shift later runs, and a check far behind (a runner was down) runs once, not once
# per missed interval.
CLAIM_SQL = """
UPDATE health_healthcheck AS c
SET claim = c.claim + 1,
    next_run_at = CASE WHEN %(advance)s THEN c.next_run_at + make_interval(secs => c.interval_s * (
        floor(extract(epoch FROM %(now)s - c.next_run_at)::float8 / c.interval_s) + 1))
        ELSE c.next_run_at END
WHERE c.id = ANY(%(ids)s)
RETURNING c.id, c.claim, c.next_run_at
"""


def _checks_claim(candidates, *, now: datetime, advance: bool) -> tuple[Claim, list[int]]:
    """Lock `candidates` (a select_for_update queryset), lease them and claim the leased ones, in one
    transaction. Returns the claim and the ids of every candidate seen."""
    tokens: dict[int, str] = {}
    try:
        with transaction.atomic():
            checks = list(candidates)
            if not checks:
                return Claim(), []
            ttl_ms = max(c.timeout_s for c in checks) * 1000 + LEASE_RUN_MARGIN_MS
            tokens = leases.leases_acquire({c.id: ttl_ms for c in checks})
            claimed = [c for c in checks if c.id in tokens]
            if claimed:
                with connection.cursor() as cursor:
                    cursor.execute(CLAIM_SQL, {"advance": advance, "now": now,
                                               "ids": [c.id for c in claimed]})
                    rows = {row[0]: row[1:] for row in cursor.fetchall()}
                for check in claimed:
                    check.claim, check.next_run_at = rows[check.id]
    except BaseException:
        leases.leases_release(tokens)  # nothing was claimed: the next tick may take them at once
        raise
    elsewhere = [c.id for c in checks if c.id not in tokens]
    return Claim(claimed, tokens, elsewhere), [c.id for c in checks]


def _host_local(check_type: str) -> bool:
    found = REGISTRY.get(check_type)
    return bool(found and found.host_local)


def _state_on_host(check_type: str, state: dict | None, host: str) -> dict:
    """The state a run on `host` starts from: a host-local check keeps one per host, under "hosts"."""
    state = state or {}
    return state.get("hosts", {}).get(host, {}) if _host_local(check_type) else state


def _state_with_host(check_type: str, state: dict | None, host: str, new: dict) -> dict:
    if not _host_local(check_type):
        return new
    state = state or {}
    return {**state, "hosts": {**state.get("hosts", {}), host: new}}


def _run_one(check: HealthCheck, token: str, host: str) -> CheckExecution:
    started = time.perf_counter()
    ctx = CheckContext(check_id=check.id, name=check.name, params=check.params, timeout_s=check.timeout_s,
                       grace_period_s=check.grace_period_s, lease_token=token, host=host,
                       state=_state_on_host(check.type, check.state, host))
    try:
        check_type = REGISTRY.get(check.type)
        if check_type is None:
            outcome = CheckOutcome.error(f"unknown check type {check.type!r}")
        else:
            outcome = check_type(ctx).run()
    except Exception as exc:  # a check's own crash is its result, never the runner's
        outcome = CheckOutcome.error(f"{type(exc).__name__}: {exc}"[:2000])
    finally:
        # This thread's own DB connections (a resource or database check); the pool thread may die.
        connections.close_all()
    return CheckExecution(outcome, (time.perf_counter() - started) * 1000)


def _execute(checks: list[HealthCheck],
             tokens: dict[int, str]) -> tuple[dict[int, CheckExecution], dict[int, Future]]:
    """Run checks concurrently; a check still running at its timeout is recorded as a timeout and
    not waited for (its thread finishes on its own). Returns the executions and the futures."""
    if not checks:
        return {}, {}
    host = settings.CASEHUB_HOST_NAME
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="health-check")
    started = time.monotonic()
    # Each check runs in a copy of this context: a sandbox run's checks stay in the sandbox.
    futures = {c.id: pool.submit(contextvars.copy_context().run, _run_one, c, tokens[c.id], host)
               for c in checks}
    results: dict[int, CheckExecution] = {}
    try:
        for check in sorted(checks, key=lambda c: c.timeout_s):
            remaining = started + check.timeout_s - time.monotonic()
            try:
                results[check.id] = futures[check.id].result(timeout=max(0.0, remaining))
            except FutureTimeout:
                futures[check.id].cancel()
                results[check.id] = CheckExecution(
                    CheckOutcome(CheckStatus.TIMEOUT.value, f"did not finish within {check.timeout_s:g}s"),
                    check.timeout_s * 1000)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results, futures


def _claim_run(claim: Claim, *, now: datetime) -> RunReport:
    """Run the claimed checks concurrently, confirm their leases and write the results."""
    report = RunReport(leased_elsewhere=len(claim.leased_elsewhere))
    STREAMS.close_many(claim.leased_elsewhere)  # another runner owns these checks now
    if not claim.checks:
        return report
    tokens = claim.tokens
    executions, futures = _execute(claim.checks, tokens)
    timed_out = {cid for cid, ex in executions.items() if ex.outcome.status == CheckStatus.TIMEOUT}
    held = leases.leases_confirm(tokens, ttl_ms=LEASE_WRITE_MS)
    lost = [cid for cid, ok in held.items() if not ok]
    STREAMS.close_many(lost)  # our lease expired or was taken: someone else may be reading this log
    report.discarded += len(lost)
    kept = [c for c in claim.checks if held.get(c.id)]
    try:
        report.results = health_check_results_write(checks=kept, executions=executions, now=now)
    finally:
        leases.leases_release({cid: tokens[cid] for cid in tokens if held.get(cid) and cid not in timed_out})
        # A timed-out check may still be running in its thread: its lease is freed when that thread
        # ends (at once if it already has), so no second run starts while it runs, and the check is
        # not blocked longer than needed. A thread that hangs past LEASE_WRITE_MS loses it by expiry.
        for cid in timed_out:
            if held.get(cid):
                futures[cid].add_done_callback(partial(_lease_release_quietly, cid, tokens[cid]))
    report.ran = len(report.results)
    report.discarded += len(kept) - len(report.results)
    return report


def _lease_release_quietly(check_id: int, token: str, _future: Future) -> None:
    try:
        leases.leases_release({check_id: token})
    except Exception:  # a Redis blip here only delays the check until the lease expires
        logger.warning("could not release the lease of health check %s", check_id, exc_info=True)


PRUNE_SQL = f"""
DELETE FROM health_checkresult WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY health_check_id ORDER BY created_at DESC, id DESC) AS n
        FROM health_checkresult WHERE health_check_id = ANY(%s)
    ) ranked WHERE n > {RESULTS_KEPT}
)
"""


# One statement for every check of the run (Django's bulk_update builds a CASE per field: 5x slower).
# The schedule is the claim's alone: a result never moves `next_run_at`.
UPDATE_CHECKS_SQL = """
UPDATE health_healthcheck AS c
SET last_status = v.status, last_duration_ms = v.duration_ms, last_run_at = %s, state = v.state::jsonb
FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::text[]) AS v(id, status, duration_ms, state)
WHERE c.id = v.id
"""


@transaction.atomic
def health_check_results_write(*, checks: list[HealthCheck], executions: dict[int, CheckExecution],
                               now: datetime) -> list[CheckResult]:
    """The runner's write step: insert the results, prune to the last RESULTS_KEPT per check and
    update the checks, in one transaction, with the checks' rows locked in id order (as edits lock
    them). Skipped (their result is stale): checks deleted or redefined while they ran, and checks
    claimed again since (compare-and-set on `claim`)."""
    if not checks:
        return []
    host = settings.CASEHUB_HOST_NAME
    current = {
        row[0]: row[1:]
        for row in HealthCheck.objects.select_for_update().filter(id__in=[c.id for c in checks])
        .order_by("id").values_list("id", "type", "params", "claim", "state")
    }
    finished = timezone.now()
    results, updated = [], []
    for check in checks:
        row = current.get(check.id)
        if row is None or row[:3] != (check.type, check.params, check.claim):
            continue
        execution = executions[check.id]
        outcome = execution.outcome
        in_grace = outcome.status != CheckStatus.SUCCESS and (
            outcome.in_grace or (now - check.grace_started_at).total_seconds() < check.grace_period_s)
        results.append(CheckResult(health_check_id=check.id, status=outcome.status,
                                   duration_ms=execution.duration_ms, message=outcome.message[:2000],
                                   in_grace=in_grace, created_at=finished))
        check.last_status = "" if in_grace else outcome.status
        check.last_duration_ms = execution.duration_ms
        check.last_run_at = finished
        check.state = (row[3] if outcome.state is None
                       else _state_with_host(check.type, row[3], host, outcome.state))
        updated.append(check)
    if not results:
        return []
    CheckResult.objects.bulk_create(results)
    with connection.cursor() as cursor:
        cursor.execute(PRUNE_SQL, [[c.id for c in updated]])
        cursor.execute(UPDATE_CHECKS_SQL, [
            finished, [c.id for c in updated], [c.last_status for c in updated],
            [c.last_duration_ms for c in updated], [json.dumps(c.state) for c in updated],
        ])
    return results


def health_checks_run_due(*, now: datetime | None = None) -> RunReport:
    """Claim and run the due checks of enabled specs that this host may run (the beat task calls
    this every tick): up to HEALTH_MAX_THREADS at a time, at most HEALTH_DUE_BATCH in all. `now`
    fixes the clock (tests); by default each claim reads it afresh."""
    report = RunReport()
    t0 = time.perf_counter()
    hosts = ["", settings.CASEHUB_HOST_NAME]
    # Streams of checks deleted, paused or moved to another host by another process are closed
    # here, in this one.
    STREAMS.close_except(
        HealthCheck.objects.filter(spec__enabled=True, type="log_grep", host__in=hosts)
        .values_list("id", flat=True),
        idle_s=settings.HEALTH_STREAM_IDLE_S,
    )
    seen: list[int] = []  # checks leased elsewhere stay due: not offered again in this run
    while len(seen) < settings.HEALTH_DUE_BATCH:
        at = now or timezone.now()
        size = min(settings.HEALTH_MAX_THREADS, settings.HEALTH_DUE_BATCH - len(seen))
        due = (HealthCheck.objects.select_for_update(skip_locked=True, of=("self",))
               .filter(spec__enabled=True, next_run_at__lte=at, host__in=hosts).exclude(id__in=seen)
               .order_by("next_run_at", "id")[:size])
        claim, candidates = _checks_claim(due, now=at, advance=True)
        seen.extend(candidates)
        report.add(_claim_run(claim, now=at))
        if len(candidates) < size:
            break
    report.wall_s = time.perf_counter() - t0
    return report


def health_spec_run(*, spec_id: int) -> RunReport:
    """Run every check of one spec now, whatever their schedule ("run now" in admin, benchmarks);
    the schedule stays as it is. Checks pinned to another host are left to that host's runner."""
    report = RunReport()
    t0 = time.perf_counter()
    ids = list(HealthCheck.objects.filter(spec_id=spec_id, host__in=["", settings.CASEHUB_HOST_NAME])
               .order_by("id").values_list("id", flat=True))
    size = settings.HEALTH_MAX_THREADS
    for i in range(0, len(ids), size):
        now = timezone.now()
        # Waits for (does not skip) a row another claim holds for a moment: then its lease decides.
        rows = (HealthCheck.objects.select_for_update(of=("self",)).filter(id__in=ids[i:i + size])
                .order_by("id"))
        claim, _ = _checks_claim(rows, now=now, advance=False)
        report.add(_claim_run(claim, now=now))
    report.wall_s = time.perf_counter() - t0
    return report
