"""Read queries of the cases app; N+1 is handled here."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from apps.cases.models import Case, CaseEvent, Queue, QueueConfig


def case_list() -> QuerySet[Case]:
    """Cases with what list views show (queue, assigned agent) joined in."""
    return Case.objects.select_related("queue", "assigned_agent")


def case_detail() -> QuerySet[Case]:
    """Cases with their timeline prefetched (one extra query for all events)."""
    return case_list().prefetch_related(
        Prefetch("events", queryset=CaseEvent.objects.select_related("actor").order_by("id"))
    )


def case_timeline(case: Case) -> QuerySet[CaseEvent]:
    return CaseEvent.objects.filter(case=case).select_related("actor").order_by("id")


def queue_config_active(queue: Queue | int) -> QueueConfig | None:
    queue_id = queue.pk if isinstance(queue, Queue) else queue
    return QueueConfig.objects.filter(queue_id=queue_id, is_active=True).select_related("queue").first()


def queue_configs_active() -> QuerySet[QueueConfig]:
    return QueueConfig.objects.filter(is_active=True, queue__is_active=True).select_related("queue")


def queue_configs_for_signal(signal_type: str) -> QuerySet[QueueConfig]:
    """Active configs that take this signal type (JSONB containment), in a fixed order."""
    return (queue_configs_active().filter(targeting__signal_types__contains=[signal_type])
            .order_by("queue__slug"))
