"""Celery tasks of the cases app: thin wrappers that call one service."""

from celery import shared_task

from apps.cases import services
from apps.cases.services.email_out import SEND_ERRORS

# Another worker holds the message's row (it is sending it): look again after this long.
BUSY_RETRY_S = 10


@shared_task(acks_late=True, soft_time_limit=120, time_limit=150)
def case_metrics_rollup() -> int:
    """Beat-driven (every 10 s): fold new CaseEvents into per-case stats. Idempotent."""
    return services.case_metrics_rollup()


# Services schedule these by name (apps.core.scheduling), never by importing them. The retry
# count lives on the Message (delivery_attempts), so Celery's own limit is off.
@shared_task(bind=True, acks_late=True, max_retries=None, soft_time_limit=120, time_limit=150)
def message_deliver(self, message_id: int) -> str:
    """Email one agent reply; a failed send retries with backoff until the message says failed."""
    outcome = services.message_deliver(message_id=message_id)
    if outcome == "retry":
        countdown = services.message_delivery_countdown(message_id=message_id)
        raise self.retry(args=(message_id,), countdown=countdown)
    if outcome == "busy":
        raise self.retry(args=(message_id,), countdown=BUSY_RETRY_S)
    return outcome


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def messages_deliver_pending() -> int:
    """Beat (every minute): queue the send of replies whose task never reached a worker."""
    return len(services.messages_deliver_pending())


@shared_task(acks_late=True, autoretry_for=SEND_ERRORS, retry_backoff=30, retry_backoff_max=1800,
             max_retries=6, soft_time_limit=60, time_limit=90)
def message_notify_agent(message_id: int) -> bool:
    """Tell the case's agent by email that a merchant wrote in the Support Hub."""
    return services.message_notify_agent(message_id=message_id)


@shared_task(acks_late=True, soft_time_limit=120, time_limit=150)
def metric_rollups_consume() -> int:
    """Beat-driven (every 10 s): fold new CaseEvents into the support metrics rollups and settle
    cases whose reopen window passed. Idempotent."""
    return services.metric_rollups_consume()
