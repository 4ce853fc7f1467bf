"""Keeping the Redis load counters honest: a change-feed consumer sets the absolute load of the
agents that events touched, and reconcile rebuilds every counter from PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from apps.assignment import counters
from apps.assignment.selectors import agent_loads
from apps.cases.models import Case, CaseEvent, EventKind
from apps.core.feed import feed_consume

logger = logging.getLogger(__name__)
COUNTERS_CONSUMER = "assignment_counters"
# Events that give a case to an agent or take it back, naming them as `from` and `to`.
HOLDING_KINDS = frozenset({EventKind.ASSIGNED, EventKind.OFFERED, EventKind.OFFER_DECLINED,
                           EventKind.OFFER_EXPIRED})


def counters_reconcile() -> int:
    """Rebuild every agent's load from PostgreSQL; returns how many agents carry load.

    A batch that reserved but has not committed yet loses its reservation here; the capacity
    trigger still refuses any overflow that could follow, and the next rebuild is exact.
    """
    loads = agent_loads()
    agents, units = counters.counters_rebuild(loads)
    if agents:
        logger.warning("load counters drifted: %d agents off by %d units in all, corrected", agents, units)
    return len(loads)


def counters_fold(events: Sequence[CaseEvent]) -> None:
    """Agents whose load may have changed (assigned to or from, transferred away, any status
    change of their case): recompute their absolute load, never an increment."""
    agents: set[int] = set()
    status_cases = set()
    for event in events:
        data = event.data or {}
        if event.kind in HOLDING_KINDS:
            agents.update(a for a in (data.get("from"), data.get("to")) if a)
        elif event.kind == EventKind.TRANSFERRED and data.get("unassigned"):
            agents.add(data["unassigned"])
        elif event.kind == EventKind.STATUS_CHANGED:
            status_cases.add(event.case_id)
    if status_cases:
        agents.update(Case.objects.filter(pk__in=status_cases, assigned_agent__isnull=False)
                      .values_list("assigned_agent_id", flat=True))
    if agents:
        counters.counters_set(agent_loads(agents))


def counters_feed_consume(*, batch_size: int = 2000) -> int:
    return feed_consume(COUNTERS_CONSUMER, counters_fold, model=CaseEvent,
                        queryset=CaseEvent.objects.only("id", "kind", "data", "case_id"),
                        batch_size=batch_size)
