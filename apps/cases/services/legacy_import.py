"""Import of cases exported from the legacy CRM: idempotent (UUID v5 ids), in batches of one
transaction each, bad rows reported by number with field-level reasons."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone

from apps.cases import legacy
from apps.cases.models import (
    Case,
    CaseEvent,
    Channel,
    Priority,
    QueueConfig,
    Source,
    Status,
    case_core_errors,
)
from apps.cases.services._events import _created_event, _events_write
from apps.cases.services.queue_configs import case_fields_validate
from apps.core.errors import ApplicationError
from apps.core.feed import feed_writer_enter
from apps.core.input import JSONDocumentError, json_document_errors, json_document_load, parse_datetime_strict
from apps.core.progress import SILENT, Progress

logger = logging.getLogger(__name__)
LEGACY_ID_MAX = Case._meta.get_field("legacy_id").max_length


@dataclass
class ImportSummary:
    rows: int = 0
    imported: int = 0
    already_present: int = 0
    errors: list[tuple[int, dict[str, list[str]]]] = field(default_factory=list)


def _statuses_of(config: QueueConfig) -> set[str]:
    """Every status a case of this queue can be in: its initial status and the transition table's."""
    used = {config.initial_status, *config.transitions}
    for targets in config.transitions.values():
        used.update(targets)
    return used


def _priority_of(raw):
    """CSV gives text, so "3" reads as 3; any other value goes to the rule as it is (true, 2.5)."""
    if raw is None or raw == "":
        return Priority.NORMAL
    if isinstance(raw, str):
        try:
            return int(raw)
        except ValueError:
            return raw
    return raw


def _legacy_row_to_case(row: dict, queues: dict[str, QueueConfig]) -> Case:
    """A validated, unsaved Case for one import row; raises ApplicationError with field errors."""
    # Text and numbers no column can take (NUL, lone surrogates, 1e999) are named by field: one
    # such value would otherwise fail the insert of the row's whole batch.
    errors = json_document_errors(row)
    legacy_id = str(row.get("legacy_id") or "").strip()
    if not legacy_id:
        errors["legacy_id"] = ["This field is required."]
    elif len(legacy_id) > LEGACY_ID_MAX:
        errors["legacy_id"] = [f"Text of at most {LEGACY_ID_MAX} characters."]
    config = queues.get(str(row.get("queue") or "").strip())
    if config is None:
        errors["queue"] = [f"Unknown queue '{row.get('queue')}'."]
    core = {
        "status": str(row.get("status") or (config.initial_status if config else Status.NEW)).strip(),
        "channel": str(row.get("channel") or Channel.EMAIL).strip(),
        "priority": _priority_of(row.get("priority")),
        **{name: str(row.get(name) or "") for name in ("merchant_ref", "customer_ref", "delivery_ref")},
    }
    # Reported in the export's column order.
    errors.update(sorted(case_core_errors(**core).items(), key=lambda item: list(core).index(item[0])))
    if "status" not in errors and config is not None and core["status"] not in _statuses_of(config):
        errors["status"] = [f"Queue '{config.queue.slug}' does not use status '{core['status']}'."]
    created_at: datetime | None = None
    if row.get("created_at") and "created_at" not in errors:
        try:  # in UTC: the export's offsets may be ones PostgreSQL refuses (+16:00 and more)
            created_at = parse_datetime_strict(str(row["created_at"]))
        except ValueError as exc:
            errors["created_at"] = [str(exc)]
    fields = row.get("fields") or {}
    if isinstance(fields, str) and "fields" not in errors:
        try:
            fields = json_document_load(fields)
        except JSONDocumentError as exc:
            if exc.code == "parse_error":
                errors["fields"] = ["Not valid JSON."]
            else:
                errors.update({("fields" if path == "non_field_errors" else f"fields.{path}"): messages
                               for path, messages in exc.errors.items()})
            fields = {}
    if config is not None and not any(key == "fields" or key.startswith("fields.") for key in errors):
        try:
            case_fields_validate(config=config, fields=fields)
        except ApplicationError as exc:
            errors.update(exc.errors)
    if errors:
        raise ApplicationError("Invalid row.", errors=errors)
    created_at = created_at or timezone.now()
    return Case(
        id=legacy.legacy_case_id(legacy_id), legacy_id=legacy_id, queue=config.queue,
        source=Source.LEGACY_IMPORT, subject=str(row.get("subject") or "")[:300], fields=fields,
        created_at=created_at, config_version=config.version,
        resolved_at=created_at if core["status"] in (Status.RESOLVED, Status.CLOSED) else None, **core,
    )


_LEGACY_IMPORT_LOCK = zlib.crc32(b"casehub:cases:legacy-import")


def _gin_pending_list_flush() -> None:
    """Merge the GIN index's pending list after a bulk load: until (auto)vacuum does, the planner
    may skip the index and dynamic-field searches scan the table (see ../shared/DESIGN.md)."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT gin_clean_pending_list('case_fields_gin'::regclass)")
    except DatabaseError:  # not the index owner: autovacuum will get to it
        logger.warning("could not flush the GIN pending list of case_fields_gin")


def cases_import_legacy(*, rows: Iterable[tuple[int, dict | str]], actor=None, progress: Progress = SILENT,
                        total: int | None = None, batch_size: int = 1000) -> ImportSummary:
    """Import legacy CRM rows: idempotent (UUID v5 ids), valid rows kept, bad rows reported by number.

    Each batch is one transaction: one query for ids already present, one INSERT of the new
    cases, one of their `created` events.
    """
    queues = {c.queue.slug: c for c in QueueConfig.objects.filter(is_active=True).select_related("queue")}
    summary = ImportSummary()
    batch: list[Case] = []

    def flush() -> None:
        if not batch:
            return
        with transaction.atomic():
            feed_writer_enter(CaseEvent)
            # Imports running at once take turns per batch, so each sees the other's committed
            # cases as present: running the same file twice in parallel is as safe as in a row.
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_LEGACY_IMPORT_LOCK])
            present = set(Case.objects.filter(pk__in=[c.pk for c in batch]).values_list("pk", flat=True))
            fresh = list({c.pk: c for c in batch if c.pk not in present}.values())
            try:
                Case.objects.bulk_create(fresh)
            except IntegrityError as exc:
                # Only a case created elsewhere with one of these legacy ids at this very moment.
                raise ApplicationError("Another writer created some of these cases; run it again.") from exc
            _events_write([_created_event(c, actor, queue_slug=c.queue.slug, legacy_id=c.legacy_id)
                           for c in fresh])
        summary.imported += len(fresh)
        summary.already_present += len(batch) - len(fresh)
        batch.clear()

    with progress.bar(total=total or 0, desc="importing cases", leave=True) as bar:
        for number, row in rows:
            summary.rows += 1
            bar.update(1)
            if isinstance(row, str):
                summary.errors.append((number, {"non_field_errors": [row]}))
                continue
            try:
                batch.append(_legacy_row_to_case(row, queues))
            except ApplicationError as exc:
                summary.errors.append((number, exc.errors))
                continue
            if len(batch) >= batch_size:
                flush()
        flush()
    if summary.imported:
        _gin_pending_list_flush()
    return summary
