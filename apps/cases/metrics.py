"""Prometheus metrics of cases: backlog per queue/status, handle time and first-contact
resolution (from the CaseStats rollup kept by the change-feed consumer), SLA breaches, proactive-outreach
experiment groups with their follow-up contacts, consumer lag."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.db.models import Avg, Count, Q
from prometheus_client.core import GaugeMetricFamily, Metric

from apps.cases.models import OPEN_STATUSES, Case, CaseEvent, CaseStats
from apps.cases.selectors import experiment_impact
from apps.cases.services import CASE_METRICS_CONSUMER
from apps.core.feed import feed_lag


def backlog() -> list[tuple[str, str, int]]:
    """(queue slug, status, open cases)."""
    rows = (Case.objects.filter(status__in=OPEN_STATUSES).values("queue__slug", "status")
            .annotate(n=Count("id")).order_by("queue__slug", "status"))
    return [(r["queue__slug"], r["status"], r["n"]) for r in rows]


def resolution_stats() -> list[tuple[str, float | None, float | None, int]]:
    """(queue slug, average handle seconds, first-contact-resolution ratio, resolved cases)."""
    rows = (CaseStats.objects.filter(resolved_at__isnull=False).values("queue__slug")
            .annotate(handle=Avg("handle_seconds"), resolved=Count("case_id"),
                      fcr=Count("case_id", filter=Q(first_contact_resolution=True)))
            .order_by("queue__slug"))
    return [(r["queue__slug"], r["handle"], r["fcr"] / r["resolved"] if r["resolved"] else None,
             r["resolved"]) for r in rows]


_SLA_BREACHES = """
SELECT q.slug,
       count(*) FILTER (WHERE c.first_response_at IS NULL AND c.created_at <
                        now() - make_interval(mins => (cfg.sla->>'first_response_minutes')::int)),
       count(*) FILTER (WHERE c.resolved_at IS NULL AND c.created_at <
                        now() - make_interval(mins => (cfg.sla->>'resolution_minutes')::int))
FROM cases_case c
JOIN cases_queueconfig cfg ON cfg.queue_id = c.queue_id AND cfg.is_active
JOIN cases_queue q ON q.id = c.queue_id
WHERE c.status = ANY(%s)
GROUP BY q.slug ORDER BY q.slug
"""


def sla_breaches() -> list[tuple[str, int, int]]:
    """(queue slug, open cases past the first-response target, open cases past the resolution target).

    A queue without a target counts no breaches of it (the interval is NULL, the filter false).
    """
    with connection.cursor() as cursor:
        cursor.execute(_SLA_BREACHES, [list(OPEN_STATUSES)])
        return [(slug, first, resolution) for slug, first, resolution in cursor.fetchall()]


def collect() -> Iterable[Metric]:
    open_cases = GaugeMetricFamily("casehub_cases_open", "Open cases (backlog) per queue and status.",
                                   labels=["queue", "status"])
    for queue, status, n in backlog():
        open_cases.add_metric([queue, status], n)
    yield open_cases
    handle = GaugeMetricFamily("casehub_case_handle_time_seconds_avg",
                               "Average time from creation to resolution of resolved cases.",
                               labels=["queue"])
    fcr = GaugeMetricFamily("casehub_case_first_contact_resolution_ratio",
                            "Share of resolved cases resolved on first contact.", labels=["queue"])
    resolved = GaugeMetricFamily("casehub_cases_resolved", "Resolved cases seen by the rollup.",
                                 labels=["queue"])
    for queue, seconds, ratio, n in resolution_stats():
        if seconds is not None:
            handle.add_metric([queue], seconds)
        if ratio is not None:
            fcr.add_metric([queue], ratio)
        resolved.add_metric([queue], n)
    yield handle
    yield fcr
    yield resolved
    breaches = GaugeMetricFamily("casehub_cases_sla_breached", "Open cases past a queue SLA target.",
                                 labels=["queue", "target"])
    for queue, first, resolution in sla_breaches():
        breaches.add_metric([queue, "first_response"], first)
        breaches.add_metric([queue, "resolution"], resolution)
    yield breaches
    deliveries = GaugeMetricFamily("casehub_signal_experiment_deliveries",
                                   "Deliveries per proactive-outreach experiment group.",
                                   labels=["experiment", "group"])
    followups = GaugeMetricFamily("casehub_signal_experiment_followups",
                                  "Deliveries of the group that later led to a customer-initiated case.",
                                  labels=["experiment", "group"])
    for row in experiment_impact():
        deliveries.add_metric([row["experiment"], row["group"]], row["deliveries"])
        followups.add_metric([row["experiment"], row["group"]], row["followups"])
    yield deliveries
    yield followups
    lag = GaugeMetricFamily("casehub_feed_lag_events", "Case events not yet read by a consumer.",
                            labels=["consumer"])
    lag.add_metric([CASE_METRICS_CONSUMER], feed_lag(CASE_METRICS_CONSUMER, model=CaseEvent))
    yield lag
