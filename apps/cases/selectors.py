"""Read queries of the cases app; N+1 is handled here."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from apps.cases.models import (
    Attachment,
    Case,
    CaseEvent,
    Message,
    MessageDirection,
    MessageSource,
    Queue,
    QueueConfig,
)
from apps.merchants.models import MerchantUser


def case_list() -> QuerySet[Case]:
    """Cases with what list views show (queue, assigned agent) joined in."""
    return Case.objects.select_related("queue", "assigned_agent")


def case_list_for_merchant(merchant_ref: str) -> QuerySet[Case]:
    """A merchant's cases (indexed `merchant_ref`), for the Support Hub."""
    return case_list().filter(merchant_ref=merchant_ref)


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


def experiment_impact() -> list[dict]:
    """Per experiment and group: deliveries, and how many later led to a customer-initiated case.

    The follow-up contact rate of treatment vs control is the outreach's impact. A follow-up is a
    case for the same delivery, created after the signal, that no signal created.
    """
    from django.db.models import Count, Exists, OuterRef

    from apps.cases.models import SignalOutcome, Source

    followup = Case.objects.filter(delivery_ref=OuterRef("delivery_ref"),
                                   created_at__gt=OuterRef("created_at")).exclude(source=Source.SIGNAL)
    return list(
        SignalOutcome.objects.exclude(experiment="").values("experiment", "group")
        .annotate(deliveries=Count("id"), followups=Count("id", filter=Exists(followup)))
        .order_by("experiment", "group")
    )


# The conversation of a case ------------------------------------------------------------------


def message_thread(case: Case | object, *, merchant_view: bool = False) -> QuerySet[Message]:
    """A case's messages oldest first, each with its sender and attachments: two queries however
    many messages and files. `merchant_view` leaves out what merchants never see (internal notes,
    auto-replies, bounces)."""
    case_id = case.pk if isinstance(case, Case) else case
    messages = Message.objects.filter(case_id=case_id)
    if merchant_view:
        messages = messages.filter(merchant_visible=True)
    return (messages.select_related("sender_user")
            .prefetch_related(Prefetch("attachments", queryset=Attachment.objects.order_by("id")))
            .order_by("id"))


def message_reply_target(case: Case | object) -> Message | None:
    """The newest mail a person sent on the case: agents' replies go to its sender and thread
    under it. Auto-replies and bounces are no one to answer."""
    case_id = case.pk if isinstance(case, Case) else case
    return (Message.objects.filter(case_id=case_id, direction=MessageDirection.INBOUND,
                                   source=MessageSource.EMAIL, is_auto_reply=False, is_bounce=False)
            .exclude(sender_address="").order_by("-id").first())


def message_cases_by_message_id(message_ids: list[str]) -> dict[str, object]:
    """Case id of each stored message among `message_ids` (threading by In-Reply-To/References)."""
    if not message_ids:
        return {}
    return dict(Message.objects.filter(message_id__in=message_ids).values_list("message_id", "case_id"))


def merchant_ref_for_address(address: str) -> str:
    """The external id of the one active merchant whose active user has this email address; ""
    when none or several do (a shared address cannot say whose case it is)."""
    if not address:
        return ""
    refs = set(MerchantUser.objects.filter(
        user__email__iexact=address, user__is_active=True, merchant__is_active=True,
    ).values_list("merchant__external_id", flat=True).distinct()[:2])
    return refs.pop() if len(refs) == 1 else ""


# Support metrics -------------------------------------------------------------------------------

_SERIES_GROUPS = {"day": ("day",), "queue": ("queue_id", "queue__slug"),
                  "agent": ("agent_id", "agent__display_name")}


def metric_series(*, start, end, queue_ids=None, agent_ids=None, by: str = "day") -> list[dict]:
    """Support metrics from the rollups for days `start`..`end` (inclusive), summed per day, queue
    or agent: one grouped query over the day rows. Each row holds the summed counters and the
    metrics of apps.cases.metric_definitions.ratios (AHT, time to resolve, MTR, DWR, FCR...).

    By agent, or filtered by agents, only cases that had an agent count (the agent rollup).
    """
    from django.db.models import Sum

    from apps.cases import metric_definitions as defs
    from apps.cases.models import MetricRollupAgentDay, MetricRollupQueueDay

    if by not in _SERIES_GROUPS:
        raise ValueError(f"by must be one of {', '.join(_SERIES_GROUPS)}")
    per_agent = by == "agent" or agent_ids is not None
    model = MetricRollupAgentDay if per_agent else MetricRollupQueueDay
    rows = model.objects.filter(day__range=(start, end))
    if queue_ids is not None:
        rows = rows.filter(queue_id__in=queue_ids)
    if agent_ids is not None:
        rows = rows.filter(agent_id__in=agent_ids)
    group = _SERIES_GROUPS[by]
    series = rows.order_by().values(*group).annotate(**{name: Sum(name) for name in defs.COUNTERS})
    return [{**row, **defs.ratios(row)} for row in series.order_by(*group)]
