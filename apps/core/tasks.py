"""Celery tasks of the core app: thin wrappers that call one service."""

from celery import shared_task

from apps.core.idempotency import idempotency_keys_purge
from apps.core.lake import lake_export


@shared_task(acks_late=True, soft_time_limit=300, time_limit=330)
def idempotency_keys_purge_expired() -> int:
    """Beat (hourly): forget Idempotency-Keys past their TTL, in batches. Idempotent."""
    return idempotency_keys_purge()


@shared_task(acks_late=True, soft_time_limit=300, time_limit=330)
def lake_export_run() -> dict[str, int]:
    """Beat (every minute): write each lake stream's new rows as Parquet, exactly once. Idempotent."""
    return lake_export()
