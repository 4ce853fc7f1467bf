"""Write use cases of assignment, one module per use case; every name callers use is here."""

from apps.assignment.services.counters import (
    COUNTERS_CONSUMER,
    counters_feed_consume,
    counters_fold,
    counters_reconcile,
)
from apps.assignment.services.engine import BatchResult, assignment_batch_run
from apps.assignment.services.presence import agent_heartbeat, agent_presence_set, agents_presence_expire

__all__ = [
    "COUNTERS_CONSUMER",
    "BatchResult",
    "agent_heartbeat",
    "agent_presence_set",
    "agents_presence_expire",
    "assignment_batch_run",
    "counters_feed_consume",
    "counters_fold",
    "counters_reconcile",
]
