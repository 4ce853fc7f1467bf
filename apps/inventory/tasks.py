"""Celery tasks of the inventory app (queue `ingestion`): thin wrappers that call one service."""

from celery import shared_task

from apps.core.errors import ApplicationError
from apps.inventory import services


class RunHeldElsewhere(Exception):
    """The reason a message looks at its run again later: another worker holds it, alive so far."""


# What a message leaves when it ran nothing itself: its run is behind a busy run of its store
# (which hands it on when it ends), held by another worker, or done.
_IDLE = ("waiting", "busy", "skipped")


# Services schedule this task by its name (services/scheduling.py), never by importing it.
@shared_task(bind=True, acks_late=True, max_retries=None, soft_time_limit=3600, time_limit=3660)
def ingestion_run_process(self, run_id: int, seen_heartbeat: str | None = None) -> str:
    """Process (or resume) one run; on failure with attempts left, retry with backoff. A message
    whose run cannot start now takes the next runnable run of another store instead of waiting."""
    outcome = services.ingestion_run_process(run_id=run_id)
    if outcome == "retry":
        raise self.retry(args=(run_id,), kwargs={}, countdown=_backoff_s(self.request.retries))
    again = None
    if outcome == "busy":
        # Another worker's claim still looks alive. A redelivered message (its worker died)
        # looks again the moment the heartbeat turns stale, so the run resumes even before the
        # beat job notices; a duplicate of a live run's message ends after that look.
        again = services.ingestion_run_busy_retry(run_id=run_id, seen_heartbeat=seen_heartbeat)
    if outcome in _IDLE and (taken := services.ingestion_run_process_next()) is not None:
        other, other_outcome = taken
        outcome = f"{outcome}; ran {other}: {other_outcome}"
        if other_outcome == "retry":
            self.apply_async(args=(other,), countdown=_backoff_s(0))
    if again is not None:
        countdown, heartbeat = again
        raise self.retry(args=(run_id,), kwargs={"seen_heartbeat": heartbeat}, countdown=countdown,
                         exc=RunHeldElsewhere(run_id))
    return outcome


def _backoff_s(retries: int) -> int:
    return min(300, 5 * 2 ** min(retries, 6))


@shared_task(acks_late=True, soft_time_limit=60, time_limit=90)
def ingestion_runs_requeue_stale() -> int:
    """Beat (every 5 s): re-queue runs whose worker stopped heartbeating, or never got a message."""
    return len(services.ingestion_runs_requeue_stale())


@shared_task(acks_late=True, soft_time_limit=600, time_limit=660)
def inventory_purge_expired() -> dict:
    """Beat (hourly): delete raw payloads and history rows past their TTL, in batches."""
    return services.inventory_purge_expired()


@shared_task(acks_late=True, soft_time_limit=600, time_limit=660)
def oos_model_train() -> int | None:
    """Beat (daily) or ops from admin: train a new out-of-stock model version."""
    try:
        return services.oos_model_train().version
    except ApplicationError:
        return None  # not enough history yet; the heuristic stays in use
