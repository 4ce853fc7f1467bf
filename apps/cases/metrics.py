"""Prometheus metrics of cases: backlog per queue (and status), SLA breaches of open cases, the
support metrics (AHT, time to resolve, MTR, DWR, FCR, time to first offer and response, offers
expired, a first-offer histogram) read from the rollups the `metric_rollups` consumer keeps
(apps.cases.metric_definitions), proactive-outreach experiment groups, consumer lag.

Waiting cases and the oldest wait per queue, agents available and a sliding-window wait histogram
are the assignment app's (apps.assignment.metrics)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import connection
from django.db.models import Count, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from apps.cases import metric_definitions as defs
from apps.cases.models import OPEN_STATUSES, Case, CaseEvent, MetricRollupQueueDay, Queue
from apps.cases.selectors import experiment_impact
from apps.cases.services import CASE_METRICS_CONSUMER, METRIC_ROLLUPS_CONSUMER
from apps.core.feed import feed_lag


def backlog() -> list[tuple[str, str, int]]:
    """(queue slug, status, open cases)."""
    rows = (Case.objects.filter(status__in=OPEN_STATUSES).values("queue__slug", "status")
            .annotate(n=Count("id")).order_by("queue__slug", "status"))
    return [(r["queue__slug"], r["status"], r["n"]) for r in rows]


def rollup_totals() -> dict[str, dict]:
    """Queue slug -> the counters of all its day rollups summed, with their ratios: one query over
    the day rows (days x queues), whatever the number of cases."""
    rows = (MetricRollupQueueDay.objects.order_by().values("queue__slug")
            .annotate(**{name: Sum(name) for name in defs.COUNTERS}))
    return {row.pop("queue__slug"): {**row, **defs.ratios(row)} for row in rows}


def resolution_stats() -> list[tuple[str, float | None, float | None, int]]:
    """(queue slug, AHT seconds, FCR ratio, resolved cases) from the rollups."""
    return [(slug, t["aht_seconds"], t["fcr"], t["resolved"]) for slug, t in sorted(rollup_totals().items())]


# Bucket counts summed element by element in the database, so a scrape reads a few rows per queue.
_OFFER_WAITS = """
SELECT q.slug, u.n, sum(u.v) FROM cases_metricrollupqueueday r
JOIN cases_queue q ON q.id = r.queue_id, unnest(r.offer_wait_buckets) WITH ORDINALITY AS u(v, n)
GROUP BY q.slug, u.n ORDER BY q.slug, u.n
"""


def offer_wait_histogram() -> dict[str, list[int]]:
    """Queue slug -> cumulative counts of cases by time from creation to first offer (or
    assignment), one per bound of OFFER_WAIT_BUCKETS plus +Inf."""
    out: dict[str, list[int]] = {}
    with connection.cursor() as cursor:
        cursor.execute(_OFFER_WAITS)
        for slug, _, count in cursor.fetchall():
            out.setdefault(slug, []).append(int(count))
    return out


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
    backlog_rows = backlog()
    for queue, status, n in backlog_rows:
        open_cases.add_metric([queue, status], n)
    yield open_cases
    per_queue = GaugeMetricFamily("casehub_cases_backlog", "Open cases (backlog) per queue.",
                                  labels=["queue"])
    # Every active queue has a sample, so an empty queue reads 0 rather than no data.
    totals = dict.fromkeys(Queue.objects.filter(is_active=True).values_list("slug", flat=True), 0)
    for queue, _, n in backlog_rows:
        totals[queue] = totals.get(queue, 0) + n
    for queue, n in sorted(totals.items()):
        per_queue.add_metric([queue], n)
    yield per_queue
    yield from _support_metrics()
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
    for consumer in (CASE_METRICS_CONSUMER, METRIC_ROLLUPS_CONSUMER):
        lag.add_metric([consumer], feed_lag(consumer, model=CaseEvent))
    yield lag


# (name, help, ratio key) of the support metrics gauges; a queue without data for one has no sample.
_RATIO_GAUGES = (
    ("casehub_case_handle_time_seconds_avg",
     "AHT: average time from acceptance by an agent to first resolution, less time pending the customer.",
     "aht_seconds"),
    ("casehub_case_time_to_resolve_seconds_avg", "Average time from creation to first resolution.",
     "time_to_resolve_seconds"),
    ("casehub_case_manual_actions_per_resolution",
     "MTR: manual agent actions (edits, notes, transitions, replies, transfers) per resolved case.", "mtr"),
    ("casehub_case_did_we_resolve_ratio",
     "DWR: share of resolved cases not reopened within the window (decided cases only).", "dwr"),
    ("casehub_case_first_contact_resolution_ratio",
     "FCR: share of resolved cases with one agent contact, no reopen and no follow-up case within the "
     "window (decided cases only).", "fcr"),
    ("casehub_case_time_to_first_offer_seconds_avg",
     "Average time from creation to the first offer (or assignment).", "time_to_first_offer_seconds"),
    ("casehub_case_time_to_first_response_seconds_avg",
     "Average time from creation to the first agent reply.", "time_to_first_response_seconds"),
)


def _support_metrics() -> Iterable[Metric]:
    totals = rollup_totals()
    for name, text, key in _RATIO_GAUGES:
        gauge = GaugeMetricFamily(name, text, labels=["queue"])
        for queue, row in sorted(totals.items()):
            if row[key] is not None:
                gauge.add_metric([queue], row[key])
        yield gauge
    resolved = GaugeMetricFamily("casehub_cases_resolved", "Resolved cases seen by the rollups.",
                                 labels=["queue"])
    expired = CounterMetricFamily("casehub_offers_expired", "Offers that expired unanswered.",
                                  labels=["queue"])
    breached = CounterMetricFamily("casehub_case_sla_breaches",
                                   "Cases that met an SLA target late (first response, resolution).",
                                   labels=["queue", "target"])
    for queue, row in sorted(totals.items()):
        resolved.add_metric([queue], row["resolved"])
        expired.add_metric([queue], row["offers_expired"])
        breached.add_metric([queue, "first_response"], row["first_response_breached"])
        breached.add_metric([queue, "resolution"], row["resolution_breached"])
    yield resolved
    yield expired
    yield breached
    histogram = HistogramMetricFamily("casehub_case_first_offer_seconds",
                                      "Time from creation to the first offer (or assignment) of a case.",
                                      labels=["queue"])
    for queue, counts in sorted(offer_wait_histogram().items()):
        bounds = [str(float(b)) for b in defs.OFFER_WAIT_BUCKETS] + ["+Inf"]
        histogram.add_metric([queue], list(zip(bounds, counts, strict=True)),
                             sum_value=totals.get(queue, {}).get("first_offer_seconds") or 0.0)
    yield histogram
