"""Celery tasks of the cases app: thin wrappers that call one service."""

from celery import shared_task

from apps.cases import services


@shared_task(acks_late=True, soft_time_limit=120, time_limit=150)
def case_metrics_rollup() -> int:
    """Beat-driven (every 10 s): fold new CaseEvents into per-case stats. Idempotent."""
    return services.case_metrics_rollup()
