"""Prometheus metrics of assignment: waiting cases and the oldest wait per queue, agents by
presence (and how many take cases), time from creation to first offer or assignment over a
recent window, recent offers by outcome (expired among them), the drift between the Redis load
counters and PostgreSQL now, and the drift the reconcile job found and corrected."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

import redis
from django.db.models import Count, Min, Q, Sum
from django.db.models.functions import Extract, Now
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from apps.assignment import counters
from apps.assignment.models import Agent, Offer, OfferState, Presence
from apps.assignment.selectors import agent_loads, heartbeat_ttl
from apps.cases.models import WAITING, Case, Queue

# Upper bounds (seconds) of the wait histogram: a chat case is taken in seconds, a backlog in hours.
WAIT_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)
WAIT_WINDOW = timedelta(hours=1)


def waiting_per_queue() -> list[tuple[str, int, float]]:
    """(queue slug, waiting cases, seconds the oldest has waited) for every active queue and any
    queue with waiting cases."""
    rows = {r["queue_id"]: r for r in Case.objects.filter(WAITING).order_by().values("queue_id").annotate(
        n=Count("pk"), oldest=Extract(Now(), "epoch") - Extract(Min("created_at"), "epoch"))}
    queues = Queue.objects.filter(Q(is_active=True) | Q(pk__in=list(rows))).order_by("slug")
    return [(slug, rows[pk]["n"], float(rows[pk]["oldest"])) if pk in rows else (slug, 0, 0.0)
            for pk, slug in queues.values_list("pk", "slug")]


def agents_by_state() -> dict[str, int]:
    """Agents per presence, an available one whose heartbeats stopped counted as stale_heartbeat."""
    fresh = Q(heartbeat_at__gte=Now() - heartbeat_ttl())
    available = Q(presence=Presence.AVAILABLE)
    return Agent.objects.aggregate(
        available=Count("pk", filter=available & fresh),
        stale_heartbeat=Count("pk", filter=available & ~fresh),
        **{p.value: Count("pk", filter=Q(presence=p)) for p in Presence if p != Presence.AVAILABLE},
    )


def wait_to_assign_histogram() -> tuple[list[int], float, int]:
    """(cumulative count per bucket, sum of waits, count) of cases first assigned within the window:
    the wait from creation to first assignment, one aggregate query."""
    wait = Extract("first_assigned_at", "epoch") - Extract("created_at", "epoch")
    recent = Case.objects.filter(first_assigned_at__gte=Now() - WAIT_WINDOW).annotate(wait=wait)
    totals = recent.aggregate(
        total=Count("pk"), seconds=Sum("wait"),
        **{f"le_{i}": Count("pk", filter=Q(wait__lte=bound)) for i, bound in enumerate(WAIT_BUCKETS)},
    )
    return ([totals[f"le_{i}"] for i in range(len(WAIT_BUCKETS))], float(totals["seconds"] or 0.0),
            totals["total"])


def offers_recent() -> dict[tuple[str, str], int]:
    """Offers made within the window, by (queue slug, state): one grouped query."""
    rows = (Offer.objects.filter(created_at__gte=Now() - WAIT_WINDOW).order_by()
            .values_list("case__queue__slug", "state").annotate(n=Count("pk")))
    return {(slug, state): n for slug, state, n in rows}


def reconcile_totals() -> dict[str, int] | None:
    try:
        return counters.reconcile_totals()
    except redis.RedisError:
        return None


def counter_drift() -> tuple[int, int] | None:
    """(agents whose Redis load differs from PostgreSQL, units of difference summed), or None when
    the counters cannot be read (Redis down, or not rebuilt yet: nothing to compare).

    What the reconcile job would heal right now. A batch between its reservation and its commit
    shows up as a passing difference of its own units.
    """
    try:
        ready, _, _ = counters.counters_read([])
        stored = counters.counters_loads() if ready else None
    except redis.RedisError:
        return None
    if stored is None:
        return None
    truth = agent_loads()
    differences = [abs(stored.get(agent, 0) - truth.get(agent, 0)) for agent in set(stored) | set(truth)]
    return sum(1 for d in differences if d), sum(differences)


def collect() -> Iterable[Metric]:
    waiting = GaugeMetricFamily("casehub_assignment_waiting_cases",
                                "Open cases waiting for an agent, per queue.", labels=["queue"])
    oldest = GaugeMetricFamily("casehub_assignment_oldest_wait_seconds",
                               "How long the oldest waiting case of the queue has waited (0: none waits).",
                               labels=["queue"])
    for slug, n, seconds in waiting_per_queue():
        waiting.add_metric([slug], n)
        oldest.add_metric([slug], seconds)
    yield waiting
    yield oldest

    states = agents_by_state()
    agents = GaugeMetricFamily("casehub_assignment_agents",
                               "Agents per presence; available with a stale heartbeat counted apart.",
                               labels=["state"])
    for state, n in sorted(states.items()):
        agents.add_metric([state], n)
    yield agents
    yield GaugeMetricFamily("casehub_assignment_agents_available",
                            "Agents the engine assigns to now: available, with a fresh heartbeat.",
                            value=states["available"])

    buckets, seconds, total = wait_to_assign_histogram()
    histogram = GaugeHistogramMetricFamily(
        "casehub_assignment_wait_to_assign_seconds",
        f"Time from creation to first assignment of the cases first assigned in the last "
        f"{int(WAIT_WINDOW.total_seconds())} s (a sliding window: it goes down as well as up).",
        buckets=[*((str(float(b)), n) for b, n in zip(WAIT_BUCKETS, buckets, strict=True)),
                 ("+Inf", total)],
        gsum_value=seconds)
    yield histogram

    offers = GaugeMetricFamily(
        "casehub_assignment_offers",
        f"Offers made in the last {int(WAIT_WINDOW.total_seconds())} s, per queue and outcome "
        "(pending, accepted, declined, expired, withdrawn).", labels=["queue", "state"])
    recent = offers_recent()
    for slug in sorted({slug for slug, _ in recent}):
        for state in OfferState.values:
            offers.add_metric([slug, state], recent.get((slug, state), 0))
    yield offers

    totals = reconcile_totals()
    if totals is not None:
        for name, key, text in (
            ("runs", "runs", "Reconcile runs that compared the load counters with PostgreSQL."),
            ("drift_agents", "agents", "Agents whose load counter the reconcile job found wrong, summed."),
            ("drift_units", "units", "Capacity units of counter drift the reconcile job corrected, summed."),
            ("rebuilt_from_empty", "rebuilt_from_empty",
             "Reconcile runs that found the counters missing (Redis flushed or new) and rebuilt them."),
        ):
            yield CounterMetricFamily(f"casehub_assignment_reconcile_{name}",
                                      f"{text} Since Redis last lost its data.", value=totals[key])

    drift = counter_drift()
    yield GaugeMetricFamily("casehub_assignment_counters_readable",
                            "1 if the Redis load counters could be read and compared with PostgreSQL.",
                            value=0 if drift is None else 1)
    if drift is not None:
        yield GaugeMetricFamily("casehub_assignment_counter_drift_agents",
                                "Agents whose Redis load differs from the sum of their open cases' weights.",
                                value=drift[0])
        yield GaugeMetricFamily("casehub_assignment_counter_drift_units",
                                "Capacity units by which the Redis loads differ from PostgreSQL, summed.",
                                value=drift[1])
