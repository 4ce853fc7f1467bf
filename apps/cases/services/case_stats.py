"""The `case_metrics` change-feed consumer: folds CaseEvents into the per-case CaseStats rollup
that the metrics read (handle time, first response, first-contact resolution, reopens)."""

from __future__ import annotations

from collections.abc import Sequence

from apps.cases.models import Case, CaseEvent, CaseStats, EventKind, Queue, Status
from apps.core.feed import feed_consume

CASE_METRICS_CONSUMER = "case_metrics"


def case_stats_fold(events: Sequence[CaseEvent]) -> None:
    """Fold a batch of events (in id order) into CaseStats with a fixed number of queries; each
    row remembers the last event it took, so a batch handled twice counts once."""
    case_ids = {e.case_id for e in events}
    cases = {c.pk: c for c in Case.objects.filter(pk__in=case_ids).only("id", "queue_id", "created_at")}
    stats = {s.case_id: s for s in CaseStats.objects.filter(case_id__in=case_ids)}
    slugs = {e.data.get("to") for e in events if e.kind == EventKind.TRANSFERRED}
    queue_ids = dict(Queue.objects.filter(slug__in=slugs).values_list("slug", "id")) if slugs else {}
    for event in events:
        case = cases.get(event.case_id)
        if case is None:
            continue
        row = stats.get(case.pk)
        if row is None:
            row = stats[case.pk] = CaseStats(case_id=case.pk, queue_id=case.queue_id)
        if event.id <= row.last_event_id:
            continue  # already folded in: feeding an event twice changes nothing
        row.last_event_id = event.id
        # An internal note between agents is not a reply to the customer.
        if (event.kind == EventKind.MESSAGE and event.data.get("direction") == "outbound"
                and not event.data.get("internal")):
            row.outbound_messages += 1
            row.first_response_at = row.first_response_at or event.created_at
        elif event.kind == EventKind.TRANSFERRED and event.data.get("to") in queue_ids:
            row.queue_id = queue_ids[event.data["to"]]
        elif event.kind == EventKind.STATUS_CHANGED and event.data.get("to") == Status.RESOLVED:
            row.resolved_at = event.created_at
            row.handle_seconds = max(0.0, (event.created_at - case.created_at).total_seconds())
            row.first_contact_resolution = row.outbound_messages <= 1 and row.reopen_count == 0
        elif event.kind == EventKind.STATUS_CHANGED and event.data.get("to") == Status.REOPENED:
            row.reopen_count += 1
            row.first_contact_resolution = False
    CaseStats.objects.bulk_create(
        list(stats.values()), update_conflicts=True, unique_fields=["case"],
        update_fields=["queue", "outbound_messages", "reopen_count", "first_response_at", "resolved_at",
                       "handle_seconds", "first_contact_resolution", "last_event_id"],
    )


def case_metrics_rollup(*, batch_size: int = 2000) -> int:
    """Consume new CaseEvents into per-case stats; safe to run concurrently and to retry."""
    return feed_consume(CASE_METRICS_CONSUMER, case_stats_fold, model=CaseEvent,
                        queryset=CaseEvent.objects.only("id", "case_id", "kind", "data", "created_at"),
                        batch_size=batch_size)
