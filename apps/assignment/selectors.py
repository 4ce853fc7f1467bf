"""Read queries of assignment: agents' loads from PostgreSQL (the truth the counters copy), the
agents a batch considers, and a case's latest routing decision."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Count, Q, QuerySet, Sum

from apps.assignment.models import Agent, Presence
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


def agents_routable(now: datetime) -> QuerySet[Agent]:
    """Available agents with a fresh heartbeat, each with their (queue, priority) links."""
    return (Agent.objects.filter(presence=Presence.AVAILABLE, heartbeat_at__gte=now - heartbeat_ttl())
            .annotate(link_queues=ArrayAgg("queue_links__queue_id", default=[]),
                      link_priorities=ArrayAgg("queue_links__priority", default=[]))
            .order_by("pk"))


def agents_unroutable_counts(now: datetime) -> dict[str, int]:
    """How many agents the first two rules remove: not available, available but heartbeat stale."""
    fresh = Q(heartbeat_at__gte=now - heartbeat_ttl())
    return Agent.objects.aggregate(
        offline=Count("pk", filter=~Q(presence=Presence.AVAILABLE)),
        stale_heartbeat=Count("pk", filter=Q(presence=Presence.AVAILABLE) & ~fresh),
    )


def case_routing_decision(case: Case | str) -> dict | None:
    """The engine's latest decision on a case (why it was assigned, or why it still waits)."""
    case_id = case.pk if isinstance(case, Case) else case
    return Case.objects.filter(pk=case_id).values_list("routing_decision", flat=True).first()
