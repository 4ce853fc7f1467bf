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


# The agents a batch may route to, as plainly typed as PostgreSQL can hand them over (the
# engine reads every one of them on every batch, so datetime and array parsing would be most of
# its cost), each row also carrying how many agents the first two rules remove. With no routable
# agent there is still one row, of counts only.
_ROUTING_SQL = """
WITH unroutable AS (
    SELECT COUNT(*) FILTER (WHERE presence <> %(available)s) AS offline,
           COUNT(*) FILTER (WHERE presence = %(available)s
                            AND (heartbeat_at IS NULL OR heartbeat_at < %(fresh_since)s)) AS stale
    FROM assignment_agent
), routable AS (
    SELECT a.id, array_to_string(a.skills, ',') AS skills, a.capacity,
           COALESCE(EXTRACT(EPOCH FROM a.presence_changed_at)::float8, 0) AS changed,
           string_agg(l.queue_id || ':' || l.priority, ',') AS links,
           NULLIF(a.channel_weights, '{}'::jsonb) AS channel_weights
    FROM assignment_agent a LEFT JOIN assignment_agent_queues l ON l.agent_id = a.id
    WHERE a.presence = %(available)s AND a.heartbeat_at >= %(fresh_since)s
    GROUP BY a.id
)
SELECT u.offline, u.stale, r.id, r.skills, r.capacity, r.changed, r.links, r.channel_weights
FROM unroutable u LEFT JOIN routable r ON true
ORDER BY r.id
"""


def agents_for_routing(now: datetime) -> tuple[list[tuple], dict[str, int]]:
    """Available agents with a fresh heartbeat, in id order: (id, skills joined by commas,
    capacity, epoch seconds of the last presence change or 0, "queue:priority" links joined by
    commas, the agent's own channel weights or None); and how many agents are not routable: not
    available (`offline`), available but with a stale heartbeat (`stale_heartbeat`)."""
    with connection.cursor() as cursor:
        cursor.execute(_ROUTING_SQL, {"available": Presence.AVAILABLE, "fresh_since": now - heartbeat_ttl()})
        rows = cursor.fetchall()
    counts = {"offline": rows[0][0], "stale_heartbeat": rows[0][1]}
    # Django's cursor hands jsonb over as text; most agents have no weights of their own (None).
    return [(*row[2:7], json.loads(row[7]) if row[7] else None) for row in rows if row[2] is not None], counts


def case_routing_decision(case: Case | str) -> dict | None:
    """The engine's latest decision on a case (why it was assigned, or why it still waits)."""
    case_id = case.pk if isinstance(case, Case) else case
    return Case.objects.filter(pk=case_id).values_list("routing_decision", flat=True).first()
