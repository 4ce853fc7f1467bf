"""Celery tasks of the context cache: the nightly bulk refresh of slowly changing records."""

from celery import shared_task
from django.conf import settings

from apps.cases.context import services
from apps.cases.context.models import ContextType


@shared_task(soft_time_limit=1800, time_limit=1860)
def context_refresh_agents() -> dict[str, int]:
    """Agent details from the HR system: fetched in bulk, only changed rows rewritten (safe to retry)."""
    return services.context_refresh_bulk(type=ContextType.AGENT,
                                         batch_size=settings.CASEHUB_CONTEXT_BULK_BATCH)
