"""Celery tasks of the health app (queue `health`): take IDs, call one service."""

from celery import shared_task

from apps.health import services


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150)
def health_run_due() -> dict:
    """Beat runs this every second; claims (SKIP LOCKED plus leases) split overlapping ticks on
    several workers, so each due check runs once."""
    report = services.health_checks_run_due()
    return {"ran": report.ran, "leased_elsewhere": report.leased_elsewhere, "discarded": report.discarded}


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150)
def health_spec_run(spec_id: int) -> dict:
    report = services.health_spec_run(spec_id=spec_id)
    return {"ran": report.ran, "leased_elsewhere": report.leased_elsewhere, "discarded": report.discarded}
