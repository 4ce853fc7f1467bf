"""Read queries of assignment: agents' loads from PostgreSQL (the truth the counters copy), the
agents a batch considers, and a case's latest routing decision."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Sum

from apps.assignment.models import Presence
from apps.cases.models import OPEN_STATUSES, Case


def heartbeat_ttl() -> timedelta:
    return timedelta(seconds=settings.ASSIGNMENT_HEARTBEAT_TTL_SECONDS)


def agent_loads(agent_ids: Iterable[int] | None = None) -> dict[int, int]:
    """Weighted open load per agent (agents named but carrying nothing get 0)."""
    cases = Case.objects.filter(assigned_agent__isnull=False, status__in=OPEN_STATUSES)
    ids = None if agent_ids is None else set(agent_ids)
    if ids is not None:
        cases = cases.filter(assigned_agent_id__in=ids)
    loads = dict(cases.order_by().values_list("assigned_agent_id").annotate(load=Sum("assigned_weight")))
    if ids is not None:
        loads = {agent_id: loads.get(agent_id, 0) for agent_id in ids}
    return loads


# The agents a batch may route to: the ones available with a fresh heartbeat, read on every
# batch, with the roster version in the same snapshot; each row also carries how many agents the
# first two rules remove. With no routable agent there is still one row, of counts only.
_ROUTABLE_SQL = """
WITH unroutable AS (
    SELECT COUNT(*) FILTER (WHERE presence <> %(available)s) AS offline,
           COUNT(*) FILTER (WHERE presence = %(available)s
                            AND (heartbeat_at IS NULL OR heartbeat_at < %(fresh_since)s)) AS stale
    FROM assignment_agent
), routable AS (
    SELECT id, COALESCE(EXTRACT(EPOCH FROM presence_changed_at)::float8, 0) AS changed
    FROM assignment_agent
    WHERE presence = %(available)s AND heartbeat_at >= %(fresh_since)s
)
SELECT (SELECT version::text FROM assignment_rosterversion), u.offline, u.stale, r.id, r.changed
FROM unroutable u LEFT JOIN routable r ON true
ORDER BY r.id
"""

# What the engine keeps of every agent between batches, as plainly typed as PostgreSQL can hand
# it over (no datetime or array parsing), with the roster version of the same snapshot.
_ROSTER_SQL = """
SELECT (SELECT version::text FROM assignment_rosterversion), a.id, array_to_string(a.skills, ','),
       a.capacity, string_agg(l.queue_id || ':' || l.priority, ','), NULLIF(a.channel_weights, '{}'::jsonb)
FROM assignment_agent a LEFT JOIN assignment_agent_queues l ON l.agent_id = a.id
GROUP BY a.id
"""


def agents_routable(now: datetime) -> tuple[str | None, list[tuple[int, float]], dict[str, int]]:
    """The roster version (None when its row is missing), the available agents with a fresh
    heartbeat in id order as (id, epoch seconds of their last presence change or 0), and how many
    agents are not routable: not available (`offline`), available but with a stale heartbeat
    (`stale_heartbeat`)."""
    with connection.cursor() as cursor:
        cursor.execute(_ROUTABLE_SQL, {"available": Presence.AVAILABLE, "fresh_since": now - heartbeat_ttl()})
        rows = cursor.fetchall()
    counts = {"offline": rows[0][1], "stale_heartbeat": rows[0][2]}
    return rows[0][0], [(row[3], row[4]) for row in rows if row[3] is not None], counts


def agent_roster() -> tuple[str | None, list[tuple]]:
    """The roster version and every agent as (id, skills joined by commas, capacity,
    "queue:priority" links joined by commas or None, their own channel weights or None)."""
    with connection.cursor() as cursor:
        cursor.execute(_ROSTER_SQL)
        rows = cursor.fetchall()
    if not rows:
        with connection.cursor() as cursor:
            cursor.execute("SELECT version::text FROM assignment_rosterversion")
            row = cursor.fetchone()
        return (row[0] if row else None), []
    # Django's cursor hands jsonb over as text; most agents have no weights of their own (None).
    return rows[0][0], [(*row[1:5], json.loads(row[5]) if row[5] else None) for row in rows]


def case_routing_decision(case: Case | str) -> dict | None:
    """The engine's latest decision on a case (why it was assigned, or why it still waits)."""
    case_id = case.pk if isinstance(case, Case) else case
    return Case.objects.filter(pk=case_id).values_list("routing_decision", flat=True).first()
