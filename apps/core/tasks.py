"""Celery tasks of the core app: thin wrappers that call one service."""

from celery import shared_task

from apps.core.idempotency import idempotency_keys_purge


@shared_task(acks_late=True, soft_time_limit=300, time_limit=330)
def idempotency_keys_purge_expired() -> int:
    """Beat (hourly): forget Idempotency-Keys past their TTL, in batches. Idempotent."""
    return idempotency_keys_purge()
