"""The `metric_rollups` change-feed consumer: recomputes the metric facts of every case a batch of
CaseEvents touches and applies the change of each case's contribution to the per-day rollups
(queue and agent), in a fixed number of set-based statements; a settle step decides DWR and FCR
of cases whose window has passed. Definitions: apps.cases.metric_definitions."""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from apps.cases import metric_definitions as defs
from apps.cases.models import (
    Case,
    CaseEvent,
    CaseMetricFacts,
    MetricRollupAgentDay,
    MetricRollupQueueDay,
    Source,
)
from apps.core.feed import feed_consume
from apps.core.lake import lake_us
from apps.core.memory import cyclic_gc_paused
from apps.core.models import FeedCursor

METRIC_ROLLUPS_CONSUMER = "metric_rollups"
SETTLE_BATCH = 2000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FACT_FIELDS = ("queue_id", "agent_id", "created_at", "first_offer_at", "accepted_at", "first_response_at",
                "first_resolved_at", "reopened_at", "followup_at", "handle_seconds", "agent_contacts",
                "manual_actions", "offers_expired", "first_response_target", "resolution_target")
_SETTLED_FIELDS = ("dwr", "fcr", "settles_at", "contribution")
_CASE_COLUMNS = ("id", "queue_id", "created_at", "customer_ref", "delivery_ref", "source")

# Cases of the same customer and delivery (both set), with what a follow-up test needs. The
# pairs arrive as two arrays, so the lookup is one statement whatever the batch.
_MATES_SQL = """
SELECT c.id, c.queue_id, c.created_at, c.customer_ref, c.delivery_ref, c.source
FROM cases_case c
WHERE (c.customer_ref, c.delivery_ref) IN (SELECT * FROM unnest(%s::text[], %s::text[]))
"""
# A person's action: an actor who is not a service account (see defs.SYSTEM_USER_PREFIX).
_HISTORY_SQL = f"""
SELECT e.id, e.case_id, e.kind, e.data, {lake_us("e.created_at")},
       e.actor_id IS NOT NULL AND NOT starts_with(COALESCE(u.username, ''), %s) AS human
FROM {CaseEvent._meta.db_table} e
LEFT JOIN {CaseEvent._meta.get_field('actor').related_model._meta.db_table} u ON u.id = e.actor_id
WHERE e.case_id = ANY(%s::uuid[])
"""
_QUEUES_SQL = """
SELECT q.id, q.slug, cfg.sla FROM cases_queue q
LEFT JOIN cases_queueconfig cfg ON cfg.queue_id = q.id AND cfg.is_active
"""


def _pair(row: tuple) -> tuple[str, str] | None:
    return (row[3], row[4]) if row[3] and row[4] else None


def _queues() -> tuple[dict[str, int], dict[int, dict]]:
    with connection.cursor() as cursor:
        cursor.execute(_QUEUES_SQL)
        rows = cursor.fetchall()
    sla = {pk: (json.loads(v) if isinstance(v, str) else v) or {} for pk, _, v in rows}
    return {slug: pk for pk, slug, _ in rows}, sla


def _cases_with_mates(case_ids: Iterable) -> dict[Any, tuple]:
    """The touched cases and every other case of the same customer and delivery: a new case may
    be the follow-up that decides an earlier case's FCR."""
    cases = {row[0]: row for row in Case.objects.filter(pk__in=list(case_ids)).values_list(*_CASE_COLUMNS)}
    pairs = {p for p in map(_pair, cases.values()) if p}
    if pairs:
        customers, deliveries = zip(*sorted(pairs), strict=True)
        with connection.cursor() as cursor:
            cursor.execute(_MATES_SQL, [list(customers), list(deliveries)])
            cases.update({row[0]: row for row in cursor.fetchall()})
    return cases


def _events_by_case(case_ids: Iterable) -> dict[Any, list[defs.Event]]:
    """Every event of the cases, read with a plain cursor: this is the consumer's largest read
    (a whole history per touched case), and the ORM's per-row conversions doubled its cost. Times
    come as integer microseconds: Django parses each timestamptz text in Python, four times
    slower than this."""
    with connection.cursor() as cursor:
        cursor.execute(_HISTORY_SQL, [defs.SYSTEM_USER_PREFIX, list(case_ids)])
        rows = cursor.fetchall()
    events: dict[Any, list[defs.Event]] = defaultdict(list)
    loads = json.loads
    for pk, case_id, kind, data, us, human in rows:
        at = _EPOCH + timedelta(microseconds=us)
        events[case_id].append(defs.Event(id=pk, kind=kind, data=loads(data) if data else {}, at=at,
                                          human=human))
    return events


def _to_json(parts: dict[defs.Key, dict[str, Any]]) -> list:
    return [[day.isoformat(), queue, agent, values] for (day, queue, agent), values in sorted(
        parts.items(), key=lambda item: (item[0][0], item[0][1], item[0][2] or 0))]


def _from_json(stored: list) -> dict[defs.Key, dict[str, Any]]:
    return {(date.fromisoformat(day), queue, agent): values for day, queue, agent, values in stored or []}


def _fact_row(case_id, facts: defs.CaseFacts, pair: tuple[str, str], parts, now: datetime,
              window) -> dict[str, Any]:
    """A CaseMetricFacts row by column, as JSON for _facts_sql (times as ISO 8601)."""
    dwr, fcr = defs.window_outcomes(facts, now=now, window=window)
    row = {"case_id": str(case_id), "customer_ref": pair[0], "delivery_ref": pair[1], "dwr": dwr, "fcr": fcr,
           "settles_at": defs.settles_at(facts, window), "contribution": _to_json(parts),
           **{name: getattr(facts, name) for name in _FACT_FIELDS}}
    return {name: value.isoformat() if isinstance(value, datetime) else value for name, value in row.items()}


def metric_rollups_fold(case_ids: Iterable) -> None:
    """Recompute the facts of the given cases (those a batch of events touched; in any order, any
    number of times: each case's facts come from its whole history) and apply their change to the
    day rollups."""
    # Some hundred thousand short-lived objects per batch (events, facts, contributions), no cycles.
    with cyclic_gc_paused():
        _fold(case_ids)


def _fold(case_ids: Iterable) -> None:
    now = timezone.now()
    cases = _cases_with_mates(set(case_ids))
    history = _events_by_case(cases)
    slugs, sla = _queues()
    old = dict(CaseMetricFacts.objects.filter(case_id__in=list(cases)).values_list("case_id", "contribution"))
    followups: dict[tuple[str, str], list[tuple[Any, datetime]]] = defaultdict(list)
    for row in cases.values():
        if _pair(row) and row[5] != Source.SIGNAL:  # an outreach the customer did not ask for is no contact
            followups[_pair(row)].append((row[0], row[2]))
    rows, deltas = [], {}
    for case_id, queue_id, created_at, customer_ref, delivery_ref, _ in cases.values():
        pair = (customer_ref, delivery_ref)
        mates = [at for other, at in followups.get(pair, ()) if other != case_id]
        facts = defs.case_facts(queue_id=queue_id, created_at=created_at, events=history.get(case_id, ()),
                                queue_ids_by_slug=slugs, followups=mates, sla_by_queue=sla)
        window = defs.reopen_window(sla.get(facts.queue_id))
        parts = defs.contribution(facts, now=now, window=window)
        defs.contribution_delta(_from_json(old.get(case_id)), parts, deltas)
        rows.append(_fact_row(case_id, facts, pair, parts, now, window))
    _write(rows, deltas, update_fields=["customer_ref", "delivery_ref", *_FACT_FIELDS, *_SETTLED_FIELDS])


def _stored_facts(row: CaseMetricFacts) -> defs.CaseFacts:
    return defs.CaseFacts(**{name: getattr(row, name) for name in _FACT_FIELDS})


def metric_rollups_settle(*, now: datetime | None = None, limit: int = SETTLE_BATCH) -> int:
    """Decide DWR and FCR of resolved cases whose window has passed with nothing deciding it
    (no event arrives to say "not reopened"); serialised with the consumer by its cursor row.

    A case's window is its queue's as configured now: after a queue's window grows, a case due
    under the old one is put off to its new end; after it shrinks, cases still settle when their
    stored end comes (late, never wrong)."""
    now = now or timezone.now()
    _, sla = _queues()
    settled = 0
    while True:
        with transaction.atomic():
            FeedCursor.objects.get_or_create(name=METRIC_ROLLUPS_CONSUMER)
            FeedCursor.objects.select_for_update().filter(name=METRIC_ROLLUPS_CONSUMER).first()
            due = list(CaseMetricFacts.objects.filter(Q(dwr__isnull=True) | Q(fcr__isnull=True),
                                                      settles_at__lte=now).order_by("settles_at")[:limit])
            rows, deltas = [], {}
            for row in due:
                facts = _stored_facts(row)
                window = defs.reopen_window(sla.get(facts.queue_id))
                parts = defs.contribution(facts, now=now, window=window)
                defs.contribution_delta(_from_json(row.contribution), parts, deltas)
                rows.append(_fact_row(row.case_id, facts, (row.customer_ref, row.delivery_ref), parts, now,
                                      window))
            _write(rows, deltas, update_fields=list(_SETTLED_FIELDS))
        settled += len(due)
        if len(due) < limit:
            return settled


def _rollup_sql(model, keys: tuple[str, ...], *, agents_only: bool) -> str:
    table = model._meta.db_table
    columns = [*keys, *defs.COUNTERS, defs.BUCKETS]
    types = {name: "double precision" if name in defs.FLOAT_COUNTERS else "integer" for name in defs.COUNTERS}
    types.update(day="date", queue_id="bigint", agent_id="bigint", **{defs.BUCKETS: "integer[]"})
    record = ", ".join(f"{name} {types[name]}" for name in columns)
    updates = [f"{name} = t.{name} + EXCLUDED.{name}" for name in defs.COUNTERS]
    buckets = defs.BUCKETS
    updates.append(f"{buckets} = ARRAY(SELECT a + b FROM unnest(t.{buckets}, EXCLUDED.{buckets})"
                   " WITH ORDINALITY AS u(a, b, n) ORDER BY n)")
    # A contribution may name an agent since removed (facts keep history): its rows are dropped.
    where = ("WHERE EXISTS (SELECT 1 FROM assignment_agent a WHERE a.id = v.agent_id)" if agents_only else "")
    return (f"INSERT INTO {table} AS t ({', '.join(columns)}) "
            f"SELECT {', '.join('v.' + c for c in columns)} "
            f"FROM jsonb_to_recordset(%s::jsonb) AS v({record}) "
            f"{where} ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {', '.join(updates)}")


_QUEUE_DAY_SQL = _rollup_sql(MetricRollupQueueDay, ("day", "queue_id"), agents_only=False)
_AGENT_DAY_SQL = _rollup_sql(MetricRollupAgentDay, ("day", "queue_id", "agent_id"), agents_only=True)


def _full(values: dict[str, Any]) -> dict[str, Any]:
    row = {name: values.get(name, 0) for name in defs.COUNTERS}
    row[defs.BUCKETS] = values.get(defs.BUCKETS) or [0] * (len(defs.OFFER_WAIT_BUCKETS) + 1)
    return row


@functools.cache
def _facts_sql(update_fields: tuple[str, ...]) -> str:
    """Upsert of CaseMetricFacts rows sent as one JSON array: a single parameter, where a
    bulk_create binds some twenty-five values per row on the client."""
    table = CaseMetricFacts._meta.db_table
    columns = [f for f in CaseMetricFacts._meta.concrete_fields if f.column != "updated_at"]
    record = ", ".join(f"{f.column} {f.rel_db_type(connection) if f.is_relation else f.db_type(connection)}"
                       for f in columns)
    names = ", ".join(f.column for f in columns)
    updates = ", ".join(f"{CaseMetricFacts._meta.get_field(name).column} = EXCLUDED."
                        f"{CaseMetricFacts._meta.get_field(name).column}" for name in update_fields)
    return (f"INSERT INTO {table} AS t ({names}, updated_at) "
            f"SELECT {names}, now() FROM jsonb_to_recordset(%s::jsonb) AS v({record}) "
            f"ON CONFLICT (case_id) DO UPDATE SET {updates}, updated_at = EXCLUDED.updated_at")


def _write(rows: list[dict[str, Any]], deltas: dict[defs.Key, dict[str, Any]], *,
           update_fields: list[str]) -> None:
    """The facts in one upsert; the deltas summed per queue-day and per agent-day, one upsert each
    (rows that do not change are left out, so a replayed batch writes no rollup row)."""
    if rows:
        with connection.cursor() as cursor:
            cursor.execute(_facts_sql(tuple(update_fields)), [json.dumps(rows)])
    by_queue: dict[tuple, dict[str, Any]] = {}
    by_agent: list[dict[str, Any]] = []
    for (day, queue, agent), values in deltas.items():
        if not any(values.get(name) for name in defs.COUNTERS) and not any(values.get(defs.BUCKETS) or ()):
            continue
        if agent is not None:
            by_agent.append({"day": day.isoformat(), "queue_id": queue, "agent_id": agent, **_full(values)})
        defs.counters_add(by_queue.setdefault((day, queue), {}), values)
    queue_rows = [{"day": day.isoformat(), "queue_id": queue, **_full(values)}
                  for (day, queue), values in by_queue.items()]
    with connection.cursor() as cursor:
        for sql, payload in ((_QUEUE_DAY_SQL, queue_rows), (_AGENT_DAY_SQL, by_agent)):
            if payload:
                cursor.execute(sql, [json.dumps(payload)])


def metric_rollups_consume(*, batch_size: int = 2000) -> int:
    """Consume new CaseEvents into the metric rollups, then settle cases whose window passed.
    Safe to run concurrently (the cursor row serialises) and to retry."""
    read = feed_consume(METRIC_ROLLUPS_CONSUMER, lambda rows: metric_rollups_fold(row[1] for row in rows),
                        model=CaseEvent, fields=("case_id",), batch_size=batch_size)
    metric_rollups_settle()
    return read
