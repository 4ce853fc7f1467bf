"""Case writes: create (one or many), update, transition, assign, notes and messages, transfer
between queues and to/from the legacy CRM, and bulk actions. Each change writes its CaseEvent(s)
in the same transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from apps.assignment.routing import Routing
from apps.cases.models import (
    CORE_EDITABLE,
    OPEN_STATUSES,
    Case,
    CaseEvent,
    Channel,
    EventKind,
    Location,
    Priority,
    Queue,
    QueueConfig,
    Source,
    Status,
    case_core_errors,
)
from apps.cases.services._events import _case_lock, _created_event, _event, _events_write
from apps.cases.services.queue_configs import _active_config, _fields_object, case_fields_validate
from apps.cases.signals import case_agents_changed, cases_waiting
from apps.core.errors import ApplicationError, Conflict
from apps.core.feed import feed_lock_key, feed_writer_enter


def _announce_waiting(cases: Iterable[Case]) -> None:
    """Once the transaction commits, tell listeners (the assignment engine) which queues gained
    waiting cases."""
    queue_ids = {c.queue_id for c in cases if c.assigned_agent_id is None
                 and c.status in OPEN_STATUSES and c.location == Location.CASEHUB}
    if queue_ids:
        transaction.on_commit(lambda: cases_waiting.send_robust(sender=Case, queue_ids=queue_ids))


def _announce_agents(*agent_ids: Any) -> None:
    """Once the transaction commits, tell listeners (the agent workspace) whose cases changed."""
    ids = {pk for pk in agent_ids if pk is not None}
    if ids:
        transaction.on_commit(lambda: case_agents_changed.send_robust(sender=Case, agent_ids=ids))


def _require_here(case: Case) -> None:
    if case.location == Location.LEGACY:
        raise Conflict("The case is being worked in the legacy CRM; transfer it back first.",
                       errors={"location": ["Case is in the legacy CRM."]}, code="in_legacy")


def _require_valid_core(**values: Any) -> None:
    errors = case_core_errors(**values)
    if errors:
        raise ApplicationError("The case is invalid.", errors=errors)


@transaction.atomic
def case_create(*, queue: Queue, fields: dict | None = None, actor=None, source: str = Source.AGENT,
                channel: str = Channel.WEB, priority: int = Priority.NORMAL, subject: str = "",
                merchant_ref: str = "", customer_ref: str = "", delivery_ref: str = "",
                signal_type: str = "", case_id=None, legacy_id: str | None = None) -> Case:
    feed_writer_enter(CaseEvent)
    config = _active_config(queue.pk)
    fields = case_fields_validate(config=config, fields=fields if fields is not None else {})
    _require_valid_core(channel=channel, priority=priority, subject=subject, merchant_ref=merchant_ref,
                        customer_ref=customer_ref, delivery_ref=delivery_ref)
    kwargs = {"id": case_id} if case_id else {}
    case = Case.objects.create(
        queue=queue, status=config.initial_status, priority=priority, channel=channel, source=source,
        subject=subject, merchant_ref=merchant_ref, customer_ref=customer_ref, delivery_ref=delivery_ref,
        signal_type=signal_type, fields=fields, legacy_id=legacy_id, config_version=config.version, **kwargs,
    )
    _events_write([_created_event(case, actor, queue_slug=queue.slug)])
    _announce_waiting([case])
    return case


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
        case.config_version = config.version
        _require_valid_core(status=case.status, **{name: getattr(case, name) for name in CORE_EDITABLE})
        if case.assigned_agent_id is not None:
            # Created with an agent: it takes its weight from them, as any assignment does.
            case.assigned_weight = Routing.from_config(config.routing).weight(case.channel)
    created = Case.objects.bulk_create(cases)
    _events_write([_created_event(c, actor, queue_slug=configs[c.queue_id].queue.slug) for c in created])
    _announce_waiting(created)
    return created


@transaction.atomic
def case_update(*, case: Case, actor=None, fields: dict | None = None, **changes: Any) -> Case:
    """Change core attributes (CORE_EDITABLE) and/or merge dynamic `fields` (a null value removes a key).

    One field_changed event per attribute or dynamic field that actually changed.
    """
    unknown = set(changes) - set(CORE_EDITABLE)
    if unknown:
        raise ApplicationError("These attributes cannot be changed here.",
                               errors={name: ["Not editable; use the dedicated action."] for name in unknown})
    _require_valid_core(**changes)
    if fields is not None:
        _fields_object(fields)
    case = _case_lock(case)
    _require_here(case)
    events: list[CaseEvent] = []
    for name, new in changes.items():
        old = getattr(case, name)
        if old != new:
            setattr(case, name, new)
            events.append(_event(case, EventKind.FIELD_CHANGED, actor, field=name, old=old, new=new))
    stamped = False
    if fields is not None:
        merged = {**case.fields, **fields}
        merged = {k: v for k, v in merged.items() if v is not None}
        config = _active_config(case.queue_id)
        case_fields_validate(config=config, fields=merged)
        stamped = case.config_version != config.version
        case.config_version = config.version
        for name in sorted(set(case.fields) | set(merged)):
            old, new = case.fields.get(name), merged.get(name)
            if old != new:
                events.append(_event(case, EventKind.FIELD_CHANGED, actor, field=f"fields.{name}",
                                     old=old, new=new))
        case.fields = merged
    if events or stamped:
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
    _announce_agents(case.assigned_agent_id)
    _events_write(events)
    _announce_waiting([case])
    return case


def _moves_to_assigned(status: str, config: QueueConfig) -> bool:
    """A new or reopened case moves to 'assigned' with its agent, where the queue allows it."""
    return status in (Status.NEW, Status.REOPENED) and Status.ASSIGNED in config.transitions.get(status, [])


def _capacity_refused(exc: IntegrityError) -> bool:
    diag = getattr(exc.__cause__, "diag", None)
    return getattr(diag, "constraint_name", None) == "case_agent_capacity"


@transaction.atomic
def case_assign(*, case: Case, agent, actor=None) -> Case:
    """Assign (or with agent=None unassign); a new/reopened case also moves to 'assigned' if allowed.

    The case takes its queue's channel weight from the agent's capacity; the capacity guard in
    the database holds for manual assignment too, so an agent at capacity is refused (Conflict).
    """
    case = _case_lock(case)
    _require_here(case)
    if case.assigned_agent_id == (agent.pk if agent else None):
        return case
    _announce_agents(case.assigned_agent_id, agent.pk if agent else None)
    events = [_event(case, EventKind.ASSIGNED, actor, **{
        "from": case.assigned_agent_id, "to": agent.pk if agent else None,
        "agent": str(agent) if agent else None,
    })]
    case.assigned_agent = agent
    config = _active_config(case.queue_id)
    if agent is not None:
        case.assigned_weight = Routing.from_config(config.routing).weight(case.channel)
        case.first_assigned_at = case.first_assigned_at or timezone.now()
        if _moves_to_assigned(case.status, config):
            events += _transition(case, Status.ASSIGNED, actor, config)
    else:
        case.assigned_weight = 0
        events += _back_to_waiting(case, actor, config, reason="unassigned")
    try:
        # No savepoint: the row and its events must stay in one transaction id; a refusal
        # leaves this atomic block (and so the whole assignment) rolled back.
        case.save()
    except IntegrityError as exc:
        if not _capacity_refused(exc):
            raise
        raise Conflict(
            f"{agent} has no spare capacity for this case (it weighs {case.assigned_weight}, "
            f"capacity {agent.capacity}).",
            errors={"agent": ["The agent is at capacity; resolve or reassign one of their cases first."]},
            code="agent_at_capacity",
        ) from None
    _events_write(events)
    _announce_waiting([case])
    return case


class BulkAssignment(NamedTuple):
    """One case of a set assignment: the engine claimed (and locked) the case row already. A
    named tuple: the engine makes one per case of every batch, and a tuple is the cheapest to make."""

    case_id: Any
    queue_id: int
    status: str
    agent_id: int
    weight: int
    # Set when the queue offers first: the case is held by the agent (its capacity counted) but
    # keeps its status until the agent accepts (apps.cases.services.offers).
    offer_expires_at: Any = None


# One statement for the whole batch: the rows arrive as one JSON array (no per-value quoting),
# the assigned cases and the waiting ones are updated by two sub-statements, and the events of
# the assigned are built from what the UPDATE returned. Row v: [id, agent id or null, weight,
# status before, status after, decision, retry at, offer expiry or null]. Every row of v is
# joined to the feed fence, so the fence is held before any event id is drawn (see
# apps.core.feed; granted at once to the caller, who took it before claiming the rows).
_ASSIGN_MANY_SQL = """
WITH fence AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared(%(fence)s)
), v AS (
    SELECT (r->>0)::uuid AS id, (r->>1)::bigint AS agent_id, (r->>2)::int AS weight,
           r->>3 AS from_status, r->>4 AS to_status, r->5 AS decision, (r->>6)::timestamptz AS retry_at,
           r->>7 AS offer_expires_at, n
    FROM fence, jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS t(r, n)
), assigned AS (
    UPDATE cases_case c SET
        assigned_agent_id = v.agent_id, assigned_weight = v.weight, status = v.to_status,
        first_assigned_at = COALESCE(c.first_assigned_at, %(now)s), updated_at = %(now)s,
        routing_decision = v.decision, routing_retry_at = NULL
    FROM v
    WHERE v.agent_id IS NOT NULL AND c.id = v.id AND c.assigned_agent_id IS NULL
    RETURNING c.id, v.n, v.agent_id, v.from_status, v.to_status, v.offer_expires_at
), waiting AS (
    UPDATE cases_case c SET routing_decision = v.decision, routing_retry_at = v.retry_at
    FROM v
    WHERE v.agent_id IS NULL AND c.id = v.id
), events AS (
    INSERT INTO cases_caseevent (case_id, kind, actor_id, data, created_at)
    SELECT a.id, e.kind, %(actor)s::bigint, e.data, %(now)s
    FROM assigned a JOIN assignment_agent ag ON ag.id = a.agent_id CROSS JOIN LATERAL (VALUES
        (1, CASE WHEN a.offer_expires_at IS NULL THEN 'assigned' ELSE 'offered' END,
         jsonb_build_object('from', NULL, 'to', a.agent_id, 'agent', ag.display_name, 'by', 'engine')
         || CASE WHEN a.offer_expires_at IS NULL THEN '{}'::jsonb
                 ELSE jsonb_build_object('expires_at', a.offer_expires_at) END),
        (2, 'status_changed', jsonb_build_object('from', a.from_status, 'to', a.to_status))
    ) AS e(k, kind, data)
    WHERE e.k = 1 OR a.to_status <> a.from_status
    ORDER BY a.n, e.k
)
SELECT id FROM assigned
"""


def cases_assign_many(*, assignments: list[BulkAssignment], decisions: dict[Any, dict],
                      configs: dict[int, QueueConfig], retry_at: dict[Any, Any] | None = None,
                      actor=None) -> list[Any]:
    """Assign many waiting cases at once and record the routing decision of every case named in
    `decisions` (one not assigned is not claimed again before its `retry_at`), with the events of
    each assignment: one statement whatever the count.

    Runs inside the caller's transaction, which took the feed fence before claiming the rows.
    Returns the ids assigned; an agent pushed past capacity makes the database refuse the whole
    set (IntegrityError, constraint case_agent_capacity), so nothing is half-written.
    """
    retry_at = retry_at or {}
    rows: list[list] = []
    assigning = set()
    for a in assignments:
        assigning.add(a.case_id)
        # An offered case keeps its status: it moves to 'assigned' when the agent accepts.
        moves = a.offer_expires_at is None and _moves_to_assigned(a.status, configs[a.queue_id])
        rows.append([a.case_id, a.agent_id, a.weight, a.status, Status.ASSIGNED if moves else a.status,
                     decisions.get(a.case_id), None, a.offer_expires_at])
    for case_id, decision in decisions.items():
        if case_id not in assigning:
            rows.append([case_id, None, 0, None, None, decision, retry_at.get(case_id), None])
    if not rows:
        return []
    with connection.cursor() as cursor:
        # orjson writes UUIDs and datetimes (ISO 8601) itself, ten times as fast as json here.
        cursor.execute(_ASSIGN_MANY_SQL, {"rows": orjson.dumps(rows).decode(), "now": timezone.now(),
                                          "fence": feed_lock_key(CaseEvent),
                                          "actor": actor.pk if getattr(actor, "pk", None) else None})
        return [row[0] for row in cursor.fetchall()]


@transaction.atomic
def case_add_note(*, case: Case, body: str, actor=None) -> CaseEvent:
    if not body.strip():
        raise ApplicationError("A note needs text.", errors={"body": ["This field is required."]})
    case = _case_lock(case)
    return _events_write([_event(case, EventKind.NOTE, actor, body=body)])[0]


def case_add_message(*, case: Case, body: str, direction: str = "outbound", actor=None):
    """A message to (outbound) or from (inbound) the customer that an agent records, not emailed: a
    Message with its timeline event (services/messages.py); the first outbound is the first response."""
    from apps.cases.services.messages import message_record  # it builds on this module

    return message_record(case=case, body=body, direction=direction, actor=actor)


@transaction.atomic
def case_transfer(*, case: Case, queue: Queue, actor=None, reason: str = "") -> Case:
    """Move a case to another queue; its fields must satisfy the new queue's schema. Unassigns it."""
    case = _case_lock(case)
    _require_here(case)
    if case.queue_id == queue.pk:
        raise ApplicationError("The case is already in that queue.", errors={"queue": ["Same queue."]})
    config = _active_config(queue.pk)
    case_fields_validate(config=config, fields=case.fields)
    case.config_version = config.version
    if case.status not in config.transitions and case.status not in (Status.RESOLVED, Status.CLOSED):
        raise ApplicationError(f"Queue '{queue.slug}' has no status '{case.status}'.",
                               errors={"queue": [f"Status '{case.status}' is not used by that queue."]})
    events = [_event(case, EventKind.TRANSFERRED, actor, reason=reason, **{
        "from": case.queue.slug, "to": queue.slug, "unassigned": case.assigned_agent_id})]
    _announce_agents(case.assigned_agent_id)
    case.queue = queue
    case.assigned_agent = None
    case.assigned_weight = 0
    events += _back_to_waiting(case, actor, config, reason="transferred")
    case.save()
    _events_write(events)
    _announce_waiting([case])
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
