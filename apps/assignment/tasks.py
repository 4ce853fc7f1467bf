"""Celery tasks of assignment (queue `assignment`): thin wrappers that call one service."""

from celery import shared_task

from apps.assignment import services
from apps.assignment.services import presence


@shared_task(acks_late=True, soft_time_limit=20, time_limit=30)
def assignment_batch_run(batch_size: int | None = None) -> int:
    """Beat-driven (every 2 s): one micro-batch; returns how many cases it assigned."""
    return services.assignment_batch_run(batch_size=batch_size).assigned


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def agents_presence_expire() -> int:
    """Beat-driven: available agents whose heartbeats stopped go offline."""
    return services.agents_presence_expire()


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def counters_reconcile() -> int:
    """Beat-driven (every minute): rebuild every load counter from PostgreSQL."""
    return services.counters_reconcile()


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def counters_feed_consume() -> int:
    """Beat-driven: absolute loads of the agents that new case events touched."""
    return services.counters_feed_consume()


@shared_task(acks_late=True, soft_time_limit=20, time_limit=30)
def offers_expire() -> int:
    """Beat-driven (every 2 s): unanswered offers expire and their cases wait again."""
    return services.offers_expire()


@shared_task(acks_late=True, soft_time_limit=20, time_limit=30)
def agent_states_publish(agent_ids: list[int]) -> int:
    """After an engine batch: rebuild and push the workspace state of the agents it gave cases to."""
    return len(services.agent_states_publish(agent_ids))


@shared_task(acks_late=True, soft_time_limit=300, time_limit=360)
def agent_presence_changes_purge() -> int:
    """Beat-driven (daily): presence history past its keeping time (the what-if reads 30 days at most)."""
    return presence.agent_presence_changes_purge()
