"""Write use cases of the cases app. Every change to a case writes its CaseEvent(s) in the same
transaction (via `_events_write`), so the timeline and the change feed are complete."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Max
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.cases import legacy, targeting
from apps.cases.models import (
    Case,
    CaseEvent,
    Channel,
    EventKind,
    ExperimentGroup,
    Location,
    Priority,
    Queue,
    QueueConfig,
    SignalOutcome,
    Source,
    Status,
)
from apps.core.errors import ApplicationError, Conflict, NotFound
from apps.core.feed import feed_writer_enter
from apps.core.progress import SILENT, Progress
from apps.core.validation import json_errors, schema_errors

logger = logging.getLogger(__name__)

CORE_EDITABLE = ("subject", "priority", "channel", "merchant_ref", "customer_ref", "delivery_ref")
# Schema types a dynamic field may have (the admin renders a form field for each).
SUPPORTED_TYPES = ("string", "integer", "number", "boolean")


# Queue configuration ----------------------------------------------------------------------


def queue_config_errors(*, fields_schema: Any, transitions: Any, initial_status: str = Status.NEW,
                        sla: Any = None, routing: Any = None,
                        targeting_rules: Any = None) -> dict[str, list[str]]:
    """Everything wrong with a queue config, keyed by field (empty when valid)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(fields_schema, dict):
        errors["fields_schema"] = ["Must be a JSON object (a JSON Schema)."]
    else:
        problems = schema_errors(fields_schema)
        if problems:
            errors["fields_schema"] = [f"Not a valid JSON Schema: {p}" for p in problems]
        elif fields_schema and fields_schema.get("type", "object") != "object":
            errors["fields_schema"] = ["The schema of dynamic fields must describe an object."]
        else:
            for name, prop in (fields_schema.get("properties") or {}).items():
                kind = prop.get("type") if isinstance(prop, dict) else None
                if kind not in SUPPORTED_TYPES:
                    errors.setdefault("fields_schema", []).append(
                        f"Property '{name}': type must be one of {', '.join(SUPPORTED_TYPES)}."
                    )
    known = set(Status.values)
    if initial_status not in known:
        errors["initial_status"] = [f"Unknown status '{initial_status}'."]
    if not isinstance(transitions, dict) or not transitions:
        errors["transitions"] = ["Must be an object mapping a status to the list of statuses it may move to."]
    else:
        for source, targets in transitions.items():
            if source not in known:
                errors.setdefault("transitions", []).append(f"Unknown status '{source}'.")
            if not isinstance(targets, list):
                errors.setdefault("transitions", []).append(f"'{source}' must map to a list.")
                continue
            for target in targets:
                if target not in known:
                    errors.setdefault("transitions", []).append(f"'{source}' -> unknown status '{target}'.")
        if initial_status in known and initial_status not in transitions:
            errors.setdefault("transitions", []).append(
                f"The initial status '{initial_status}' has no outgoing transitions."
            )
    if sla is not None and (not isinstance(sla, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sla.values()
    )):
        errors["sla"] = ["Must map target names (e.g. first_response_minutes) to positive integers."]
    if routing is not None:
        if not isinstance(routing, dict):
            errors["routing"] = ["Must be an object."]
        elif "skills" in routing and not (
            isinstance(routing["skills"], list) and all(isinstance(s, str) for s in routing["skills"])
        ):
            errors["routing"] = ["'skills' must be a list of skill names."]
    if targeting_rules is not None:
        for key, messages in targeting.targeting_errors(targeting_rules).items():
            errors[key] = messages
    return errors


@transaction.atomic
def queue_config_publish(*, queue: Queue, fields_schema: dict, transitions: dict,
                         initial_status: str = Status.NEW, sla: dict | None = None,
                         routing: dict | None = None, targeting_rules: dict | None = None,
                         user=None) -> QueueConfig:
    """Validate and publish a new config version and make it the queue's active one."""
    errors = queue_config_errors(fields_schema=fields_schema, transitions=transitions,
                                 initial_status=initial_status, sla=sla, routing=routing,
                                 targeting_rules=targeting_rules)
    if errors:
        raise ApplicationError("The queue configuration is invalid.", errors=errors)
    # Lock the queue row: two editors publishing at once get consecutive versions.
    Queue.objects.select_for_update().get(pk=queue.pk)
    version = (QueueConfig.objects.filter(queue=queue).aggregate(v=Max("version"))["v"] or 0) + 1
    QueueConfig.objects.filter(queue=queue, is_active=True).update(is_active=False)
    return QueueConfig.objects.create(
        queue=queue, version=version, is_active=True, fields_schema=fields_schema,
        transitions=transitions, initial_status=initial_status, sla=sla or {}, routing=routing or {},
        targeting=targeting_rules or {}, created_by=user,
    )


@transaction.atomic
def queue_config_activate(*, config: QueueConfig) -> QueueConfig:
    """Make an earlier version active again (a rollback of a bad edit)."""
    Queue.objects.select_for_update().get(pk=config.queue_id)
    QueueConfig.objects.filter(queue_id=config.queue_id, is_active=True).exclude(pk=config.pk).update(
        is_active=False
    )
    QueueConfig.objects.filter(pk=config.pk).update(is_active=True)
    config.is_active = True
    return config


@transaction.atomic
def queue_create(*, slug: str, name: str, **config: Any) -> Queue:
    """A queue with its first active config (keyword arguments of `queue_config_publish`)."""
    queue = Queue.objects.create(slug=slug, name=name)
    queue_config_publish(queue=queue, **config)
    return queue


def _active_config(queue_id: int) -> QueueConfig:
    config = QueueConfig.objects.filter(queue_id=queue_id, is_active=True).select_related("queue").first()
    if config is None:
        raise ApplicationError("The queue has no active configuration.",
                               errors={"queue": ["No active config."]})
    return config


# Dynamic fields: the ONE validation used by every write path ------------------------------


def case_fields_validate(*, config: QueueConfig, fields: Any) -> dict:
    """Validate dynamic `fields` against the queue's schema; field-level errors as "fields.<path>"."""
    if not isinstance(fields, dict):
        raise ApplicationError("Dynamic fields must be an object.",
                               errors={"fields": ["Must be a JSON object."]})
    errors = json_errors(fields, config.fields_schema or {})
    if errors:
        raise ApplicationError(
            "Dynamic fields are invalid.",
            errors={("fields" if key == "non_field_errors" else f"fields.{key}"): msgs
                    for key, msgs in errors.items()},
        )
    return fields


# Events -------------------------------------------------------------------------------------


def _events_write(events: list[CaseEvent]) -> list[CaseEvent]:
    """The only way CaseEvents are inserted: behind the feed's writer fence (apps.core.feed).

    Services take the fence at the start of their transaction already; taking it again here
    (granted at once to its holder) keeps any future caller safe.
    """
    if not events:
        return events
    feed_writer_enter(CaseEvent)
    return CaseEvent.objects.bulk_create(events)


def _event(case: Case, kind: str, actor=None, **data: Any) -> CaseEvent:
    return CaseEvent(case=case, kind=kind, actor=actor if getattr(actor, "pk", None) else None,
                     data=json.loads(json.dumps(data, default=str)))


def _created_event(case: Case, actor, *, queue_slug: str, **extra: Any) -> CaseEvent:
    """The `created` event holds the case's whole initial state, so replaying the timeline from it
    gives the case as it is now (what tests/cases/test_timeline.py checks)."""
    return _event(case, EventKind.CREATED, actor, source=case.source, queue=queue_slug, status=case.status,
                  fields=case.fields, **{name: getattr(case, name) for name in CORE_EDITABLE}, **extra)


def _case_lock(case: Case | Any) -> Case:
    # The feed fence first, row locks second (see apps.core.feed: no lock cycle with a consumer).
    feed_writer_enter(CaseEvent)
    case_id = case.pk if isinstance(case, Case) else case
    try:
        return Case.objects.select_for_update(of=("self",)).select_related("queue").get(pk=case_id)
    except Case.DoesNotExist:
        raise NotFound("Case not found.") from None


def _require_here(case: Case) -> None:
    if case.location == Location.LEGACY:
        raise Conflict("The case is being worked in the legacy CRM; transfer it back first.",
                       errors={"location": ["Case is in the legacy CRM."]}, code="in_legacy")


# Cases ----------------------------------------------------------------------------------------


@transaction.atomic
def case_create(*, queue: Queue, fields: dict | None = None, actor=None, source: str = Source.AGENT,
                channel: str = Channel.WEB, priority: int = Priority.NORMAL, subject: str = "",
                merchant_ref: str = "", customer_ref: str = "", delivery_ref: str = "",
                signal_type: str = "", case_id=None, legacy_id: str | None = None) -> Case:
    feed_writer_enter(CaseEvent)
    config = _active_config(queue.pk)
    fields = case_fields_validate(config=config, fields=fields if fields is not None else {})
    errors: dict[str, list[str]] = {}
    if channel not in Channel.values:
        errors["channel"] = [f"Unknown channel '{channel}'."]
    if priority not in Priority.values:
        errors["priority"] = ["An integer from 1 to 4."]
    if errors:
        raise ApplicationError("The case is invalid.", errors=errors)
    kwargs = {"id": case_id} if case_id else {}
    case = Case.objects.create(
        queue=queue, status=config.initial_status, priority=priority, channel=channel, source=source,
        subject=subject, merchant_ref=merchant_ref, customer_ref=customer_ref, delivery_ref=delivery_ref,
        signal_type=signal_type, fields=fields, legacy_id=legacy_id, **kwargs,
    )
    _events_write([_created_event(case, actor, queue_slug=queue.slug)])
    return case


@transaction.atomic
def case_update(*, case: Case, actor=None, fields: dict | None = None, **changes: Any) -> Case:
    """Change core attributes (CORE_EDITABLE) and/or merge dynamic `fields` (a null value removes a key).

    One field_changed event per attribute or dynamic field that actually changed.
    """
    unknown = set(changes) - set(CORE_EDITABLE)
    if unknown:
        raise ApplicationError("These attributes cannot be changed here.",
                               errors={name: ["Not editable; use the dedicated action."] for name in unknown})
    case = _case_lock(case)
    _require_here(case)
    events: list[CaseEvent] = []
    if "priority" in changes and changes["priority"] not in Priority.values:
        raise ApplicationError("The case is invalid.", errors={"priority": ["An integer from 1 to 4."]})
    if "channel" in changes and changes["channel"] not in Channel.values:
        raise ApplicationError("The case is invalid.", errors={"channel": ["Unknown channel."]})
    for name, new in changes.items():
        old = getattr(case, name)
        if old != new:
            setattr(case, name, new)
            events.append(_event(case, EventKind.FIELD_CHANGED, actor, field=name, old=old, new=new))
    if fields is not None:
        if not isinstance(fields, dict):
            raise ApplicationError("Dynamic fields must be an object.",
                                   errors={"fields": ["Must be an object."]})
        merged = {**case.fields, **fields}
        merged = {k: v for k, v in merged.items() if v is not None}
        case_fields_validate(config=_active_config(case.queue_id), fields=merged)
        for name in sorted(set(case.fields) | set(merged)):
            old, new = case.fields.get(name), merged.get(name)
            if old != new:
                events.append(_event(case, EventKind.FIELD_CHANGED, actor, field=f"fields.{name}",
                                     old=old, new=new))
        case.fields = merged
    if events:
        case.save()
        _events_write(events)
    return case


def _transition(case: Case, to_status: str, actor, config: QueueConfig, *, note: str = "") -> list[CaseEvent]:
    allowed = config.transitions.get(case.status, [])
    if to_status not in allowed:
        raise ApplicationError(
            f"A case in queue '{case.queue.slug}' cannot move from '{case.status}' to '{to_status}'.",
            errors={"status": [f"Allowed from '{case.status}': {', '.join(allowed) or 'none'}."]},
            code="illegal_transition",
        )
    now = timezone.now()
    old = case.status
    case.status = to_status
    if to_status == Status.RESOLVED:
        case.resolved_at = now
    elif to_status == Status.REOPENED:
        case.resolved_at = None
    events = [_event(case, EventKind.STATUS_CHANGED, actor, **{"from": old, "to": to_status})]
    if note:
        events.append(_event(case, EventKind.NOTE, actor, body=note))
    return events


def _back_to_waiting(case: Case, actor, config: QueueConfig, *, reason: str) -> list[CaseEvent]:
    """An 'assigned' case that lost its agent waits again (the queue's initial status), so the
    assignment engine, which claims unassigned cases in that status, offers it again. A system
    move, recorded like any other status change."""
    if case.status != Status.ASSIGNED or case.assigned_agent_id is not None:
        return []
    case.status = config.initial_status
    return [_event(case, EventKind.STATUS_CHANGED, actor, reason=reason,
                   **{"from": Status.ASSIGNED, "to": config.initial_status})]


@transaction.atomic
def case_transition(*, case: Case, to_status: str, actor=None, note: str = "") -> Case:
    """Move a case along its queue's transition table; an illegal move raises with the allowed ones."""
    case = _case_lock(case)
    _require_here(case)
    events = _transition(case, to_status, actor, _active_config(case.queue_id), note=note)
    case.save()
    _events_write(events)
    return case


@transaction.atomic
def case_assign(*, case: Case, agent, actor=None) -> Case:
    """Assign (or with agent=None unassign); a new/reopened case also moves to 'assigned' if allowed."""
    case = _case_lock(case)
    _require_here(case)
    if case.assigned_agent_id == (agent.pk if agent else None):
        return case
    events = [_event(case, EventKind.ASSIGNED, actor, **{
        "from": case.assigned_agent_id, "to": agent.pk if agent else None,
        "agent": str(agent) if agent else None,
    })]
    case.assigned_agent = agent
    config = _active_config(case.queue_id)
    if agent is not None:
        case.first_assigned_at = case.first_assigned_at or timezone.now()
        if case.status != Status.ASSIGNED and Status.ASSIGNED in config.transitions.get(case.status, []) \
                and case.status in (Status.NEW, Status.REOPENED):
            events += _transition(case, Status.ASSIGNED, actor, config)
    else:
        events += _back_to_waiting(case, actor, config, reason="unassigned")
    case.save()
    _events_write(events)
    return case


@transaction.atomic
def case_add_note(*, case: Case, body: str, actor=None) -> CaseEvent:
    if not body.strip():
        raise ApplicationError("A note needs text.", errors={"body": ["This field is required."]})
    case = _case_lock(case)
    return _events_write([_event(case, EventKind.NOTE, actor, body=body)])[0]


@transaction.atomic
def case_add_message(*, case: Case, body: str, direction: str = "outbound", actor=None) -> CaseEvent:
    """A message to (outbound) or from (inbound) the customer; the first outbound is the first response."""
    if direction not in ("outbound", "inbound"):
        raise ApplicationError("Unknown direction.", errors={"direction": ["outbound or inbound"]})
    if not body.strip():
        raise ApplicationError("A message needs text.", errors={"body": ["This field is required."]})
    case = _case_lock(case)
    _require_here(case)
    if direction == "outbound" and case.first_response_at is None:
        case.first_response_at = timezone.now()
        case.save(update_fields=["first_response_at", "updated_at"])
    return _events_write([_event(case, EventKind.MESSAGE, actor, body=body, direction=direction)])[0]


@transaction.atomic
def case_transfer(*, case: Case, queue: Queue, actor=None, reason: str = "") -> Case:
    """Move a case to another queue; its fields must satisfy the new queue's schema. Unassigns it."""
    case = _case_lock(case)
    _require_here(case)
    if case.queue_id == queue.pk:
        raise ApplicationError("The case is already in that queue.", errors={"queue": ["Same queue."]})
    config = _active_config(queue.pk)
    case_fields_validate(config=config, fields=case.fields)
    if case.status not in config.transitions and case.status not in (Status.RESOLVED, Status.CLOSED):
        raise ApplicationError(f"Queue '{queue.slug}' has no status '{case.status}'.",
                               errors={"queue": [f"Status '{case.status}' is not used by that queue."]})
    events = [_event(case, EventKind.TRANSFERRED, actor, reason=reason, **{
        "from": case.queue.slug, "to": queue.slug, "unassigned": case.assigned_agent_id})]
    case.queue = queue
    case.assigned_agent = None
    events += _back_to_waiting(case, actor, config, reason="transferred")
    case.save()
    _events_write(events)
    return case


@transaction.atomic
def case_legacy_transfer_out(*, case: Case, actor=None, legacy_ref: str = "", reason: str = "") -> Case:
    """Hand a case to the legacy CRM: it is frozen here until transferred back."""
    case = _case_lock(case)
    _require_here(case)
    case.location = Location.LEGACY
    case.save(update_fields=["location", "updated_at"])
    _events_write([_event(case, EventKind.LEGACY_TRANSFER, actor, direction="out", legacy_ref=legacy_ref,
                          reason=reason)])
    return case


@transaction.atomic
def case_legacy_transfer_back(*, case: Case, actor=None, reason: str = "") -> Case:
    """Undo `case_legacy_transfer_out`: the case is worked here again."""
    case = _case_lock(case)
    if case.location != Location.LEGACY:
        raise Conflict("The case is not in the legacy CRM.", errors={"location": ["Already in Casehub."]})
    case.location = Location.CASEHUB
    case.save(update_fields=["location", "updated_at"])
    _events_write([_event(case, EventKind.LEGACY_TRANSFER, actor, direction="in", reason=reason)])
    return case


# Bulk (admin actions) -------------------------------------------------------------------------


@dataclass
class BulkResult:
    done: int = 0
    errors: dict[str, str] = field(default_factory=dict)


def cases_bulk_apply(*, case_ids: Iterable, operation: Callable[[Case], Any]) -> BulkResult:
    """Apply one case service to many cases; each in its own savepoint so one bad case fails alone.

    Rows are locked up front in id order, so two bulk actions never deadlock each other.
    """
    result = BulkResult()
    with transaction.atomic():
        feed_writer_enter(CaseEvent)
        cases = list(Case.objects.select_for_update(of=("self",)).select_related("queue")
                     .filter(pk__in=list(case_ids)).order_by("pk"))
        for case in cases:
            try:
                with transaction.atomic():
                    operation(case)
                result.done += 1
            except ApplicationError as exc:
                detail = "; ".join(m for msgs in exc.errors.values() for m in msgs)
                result.errors[str(case.pk)] = f"{exc.message} {detail}".strip()
    return result


# Proactive signals ------------------------------------------------------------------------------


@dataclass
class SignalResult:
    targeted: bool
    outcome: SignalOutcome | None = None
    created: bool = False  # False on a retry of a signal already handled

    @property
    def case(self) -> Case | None:
        return self.outcome.case if self.outcome else None


_OUTCOME_INSERT = """
INSERT INTO cases_signaloutcome
    (delivery_ref, signal_type, queue_id, experiment, "group", payload, received_count, created_at)
VALUES (%s, %s, %s, %s, %s, %s::jsonb, 1, now())
ON CONFLICT (delivery_ref, signal_type) DO NOTHING
RETURNING id
"""


def signal_ingest(*, signal_type: str, delivery_ref: str, payload: dict | None = None,
                  merchant_ref: str = "", customer_ref: str = "", actor=None) -> SignalResult:
    """Turn a delivery signal into at most one proactive case per (delivery, signal type).

    Dedup is `INSERT ... ON CONFLICT DO NOTHING` on the outcome's unique key: a concurrent retry
    blocks on the first insert's index entry until it commits, then finds the row instead.
    """
    payload = payload or {}
    config = next((c for c in _configs_for_signal(signal_type)
                   if targeting.targeting_matches(c.targeting, signal_type, payload)), None)
    if config is None:
        return SignalResult(targeted=False)
    experiment, group = targeting.experiment_group(config.targeting, delivery_ref)
    with transaction.atomic():
        feed_writer_enter(CaseEvent)
        with connection.cursor() as cursor:
            cursor.execute(_OUTCOME_INSERT, [delivery_ref, signal_type, config.queue_id, experiment, group,
                                             json.dumps(payload)])
            row = cursor.fetchone()
        if row is None:
            SignalOutcome.objects.filter(delivery_ref=delivery_ref, signal_type=signal_type).update(
                received_count=F("received_count") + 1)
            outcome = SignalOutcome.objects.select_related("case").get(delivery_ref=delivery_ref,
                                                                         signal_type=signal_type)
            return SignalResult(targeted=True, outcome=outcome, created=False)
        outcome = SignalOutcome.objects.get(pk=row[0])
        if group != ExperimentGroup.CONTROL:
            properties = (config.fields_schema or {}).get("properties", {})
            try:
                outcome.case = case_create(
                    queue=config.queue, actor=actor, source=Source.SIGNAL, channel=Channel.PROACTIVE,
                    priority=config.targeting.get("priority", Priority.NORMAL),
                    subject=f"{signal_type.replace('_', ' ').capitalize()}: delivery {delivery_ref}",
                    merchant_ref=merchant_ref, customer_ref=customer_ref, delivery_ref=delivery_ref,
                    signal_type=signal_type, fields={k: v for k, v in payload.items() if k in properties},
                )
            except ApplicationError as exc:
                # The dynamic fields come from the payload: name the sender's keys. Nothing is
                # recorded (the outcome rolls back too), so a corrected retry is taken.
                raise ApplicationError(
                    f"The payload does not fit the dynamic fields of queue '{config.queue.slug}'.",
                    errors={"payload" + key.removeprefix("fields") if key.startswith("fields") else key: msgs
                            for key, msgs in exc.errors.items()},
                    code=exc.code,
                ) from exc
            outcome.save(update_fields=["case"])
        return SignalResult(targeted=True, outcome=outcome, created=True)


def _configs_for_signal(signal_type: str):
    from apps.cases.selectors import queue_configs_for_signal

    return queue_configs_for_signal(signal_type)


# Legacy import ----------------------------------------------------------------------------------


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


def _legacy_row_to_case(row: dict, queues: dict[str, QueueConfig]) -> Case:
    """A validated, unsaved Case for one import row; raises ApplicationError with field errors."""
    errors: dict[str, list[str]] = {}
    legacy_id = str(row.get("legacy_id") or "").strip()
    if not legacy_id:
        errors["legacy_id"] = ["This field is required."]
    config = queues.get(str(row.get("queue") or "").strip())
    if config is None:
        errors["queue"] = [f"Unknown queue '{row.get('queue')}'."]
    status = str(row.get("status") or (config.initial_status if config else Status.NEW)).strip()
    if status not in Status.values:
        errors["status"] = [f"Unknown status '{status}'."]
    elif config is not None and status not in _statuses_of(config):
        errors["status"] = [f"Queue '{config.queue.slug}' does not use status '{status}'."]
    channel = str(row.get("channel") or Channel.EMAIL).strip()
    if channel not in Channel.values:
        errors["channel"] = [f"Unknown channel '{channel}'."]
    try:
        priority = int(row.get("priority") or Priority.NORMAL)
        if priority not in Priority.values:
            raise ValueError
    except (TypeError, ValueError):
        errors["priority"] = ["An integer from 1 to 4."]
        priority = Priority.NORMAL
    created_at: datetime | None = None
    if row.get("created_at"):
        created_at = parse_datetime(str(row["created_at"]))
        if created_at is None:
            errors["created_at"] = ["Not an ISO 8601 date-time."]
        elif timezone.is_naive(created_at):
            created_at = timezone.make_aware(created_at, timezone.UTC)
    fields = row.get("fields") or {}
    if isinstance(fields, str):
        try:
            fields = json.loads(fields)
        except json.JSONDecodeError:
            errors["fields"] = ["Not valid JSON."]
            fields = {}
    if config is not None and "fields" not in errors:
        try:
            case_fields_validate(config=config, fields=fields)
        except ApplicationError as exc:
            errors.update(exc.errors)
    if errors:
        raise ApplicationError("Invalid row.", errors=errors)
    return Case(
        id=legacy.legacy_case_id(legacy_id), legacy_id=legacy_id, queue=config.queue, status=status,
        priority=priority, channel=channel, source=Source.LEGACY_IMPORT,
        subject=str(row.get("subject") or "")[:300], merchant_ref=str(row.get("merchant_ref") or ""),
        customer_ref=str(row.get("customer_ref") or ""), delivery_ref=str(row.get("delivery_ref") or ""),
        fields=fields, created_at=created_at or timezone.now(),
        resolved_at=(created_at or timezone.now()) if status in (Status.RESOLVED, Status.CLOSED) else None,
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


# Change-feed consumer: per-case stats ------------------------------------------------------------

CASE_METRICS_CONSUMER = "case_metrics"


def _case_stats_handle(events) -> None:
    """Fold a batch of events (in id order) into CaseStats with a fixed number of queries; each
    row remembers the last event it took, so a batch handled twice counts once."""
    from apps.cases.models import CaseStats

    case_ids = {e.case_id for e in events}
    cases = {c.pk: c for c in Case.objects.filter(pk__in=case_ids).only("id", "queue_id", "created_at")}
    stats = {s.case_id: s for s in CaseStats.objects.filter(case_id__in=case_ids)}
    slugs = {e.data.get("to") for e in events if e.kind == EventKind.TRANSFERRED}
    queue_ids = dict(Queue.objects.filter(slug__in=slugs).values_list("slug", "id")) if slugs else {}
    for event in events:
        case = cases.get(event.case_id)
        if case is None:
            continue
        row = stats.get(case.pk)
        if row is None:
            row = stats[case.pk] = CaseStats(case_id=case.pk, queue_id=case.queue_id)
        if event.id <= row.last_event_id:
            continue  # already folded in: feeding an event twice changes nothing
        row.last_event_id = event.id
        if event.kind == EventKind.MESSAGE and event.data.get("direction") == "outbound":
            row.outbound_messages += 1
            row.first_response_at = row.first_response_at or event.created_at
        elif event.kind == EventKind.TRANSFERRED and event.data.get("to") in queue_ids:
            row.queue_id = queue_ids[event.data["to"]]
        elif event.kind == EventKind.STATUS_CHANGED and event.data.get("to") == Status.RESOLVED:
            row.resolved_at = event.created_at
            row.handle_seconds = max(0.0, (event.created_at - case.created_at).total_seconds())
            row.first_contact_resolution = row.outbound_messages <= 1 and row.reopen_count == 0
        elif event.kind == EventKind.STATUS_CHANGED and event.data.get("to") == Status.REOPENED:
            row.reopen_count += 1
            row.first_contact_resolution = False
    CaseStats.objects.bulk_create(
        list(stats.values()), update_conflicts=True, unique_fields=["case"],
        update_fields=["queue", "outbound_messages", "reopen_count", "first_response_at", "resolved_at",
                       "handle_seconds", "first_contact_resolution", "last_event_id"],
    )


def case_metrics_rollup(*, batch_size: int = 2000) -> int:
    """Consume new CaseEvents into per-case stats; safe to run concurrently and to retry."""
    from apps.core.feed import feed_consume

    return feed_consume(CASE_METRICS_CONSUMER, _case_stats_handle, model=CaseEvent,
                        queryset=CaseEvent.objects.only("id", "case_id", "kind", "data", "created_at"),
                        batch_size=batch_size)


@transaction.atomic
def cases_bulk_create(*, cases: list[Case], actor=None) -> list[Case]:
    """Insert many new cases (each validated against its queue's schema) and their `created` events,
    in two statements."""
    feed_writer_enter(CaseEvent)
    configs = {c.queue_id: c for c in QueueConfig.objects.filter(
        queue_id__in={case.queue_id for case in cases}, is_active=True).select_related("queue")}
    for case in cases:
        config = configs.get(case.queue_id)
        if config is None:
            raise ApplicationError("The queue has no active configuration.",
                                   errors={"queue": [str(case.queue_id)]})
        case_fields_validate(config=config, fields=case.fields)
    created = Case.objects.bulk_create(cases)
    _events_write([_created_event(c, actor, queue_slug=configs[c.queue_id].queue.slug) for c in created])
    return created
