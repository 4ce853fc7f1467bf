"""Prometheus metrics of health: per-check status (stale included) and duration, per-spec and
system status, and the backlog of each Celery queue.

Computed at scrape time from the denormalised latest status of each check (one query), with the
same stale rule as the gate, the status API and the dashboard (apps.health.selectors.check_status).
"""

from __future__ import annotations

from collections.abc import Iterable

import redis
from django.conf import settings
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from apps.health.models import HealthCheck
from apps.health.selectors import (
    CHECK_STATES,
    ROLLUP_STATES,
    STALE,
    check_status,
    health_spec_overview,
    health_system_status,
)


def collect() -> Iterable[Metric]:
    check_state = GaugeMetricFamily(
        "casehub_health_check_status", "1 for the check's current status (stale: its latest result is "
        "past the stale limit), else 0.",
        labels=["spec", "check", "type", "status"])
    check_duration = GaugeMetricFamily(
        "casehub_health_check_duration_seconds", "Duration of the check's latest run.",
        labels=["spec", "check", "type"])
    spec_status = GaugeMetricFamily(
        "casehub_health_spec_status", "1 for the spec's overall status, else 0.", labels=["spec", "status"])
    system = GaugeMetricFamily(
        "casehub_health_system_status", "1 for the roll-up status over enabled specs, else 0.",
        labels=["status"])

    check_stale = GaugeMetricFamily(
        "casehub_health_check_stale",
        "1 when the check's latest result is older than its stale limit (the runner missed it), else 0.",
        labels=["spec", "check", "type"])

    now = timezone.now()
    rows = HealthCheck.objects.values_list("spec__name", "name", "type", "last_status", "last_duration_ms",
                                           "last_run_at", "interval_s", "timeout_s")
    for spec, name, type_, last_status, duration_ms, last_run_at, interval_s, timeout_s in rows:
        current = check_status(last_status=last_status, last_run_at=last_run_at, interval_s=interval_s,
                               timeout_s=timeout_s, now=now)
        for state in CHECK_STATES:
            check_state.add_metric([spec, name, type_, state], 1.0 if state == current else 0.0)
        check_stale.add_metric([spec, name, type_], 1.0 if current == STALE else 0.0)
        if duration_ms is not None:
            check_duration.add_metric([spec, name, type_], duration_ms / 1000)
    overview = health_spec_overview(now=now)
    for spec, (_, overall) in overview.items():
        for state in ROLLUP_STATES:
            spec_status.add_metric([spec, state], 1.0 if state == overall else 0.0)
    rollup = health_system_status(overview)
    for state in ROLLUP_STATES:
        system.add_metric([state], 1.0 if state == rollup else 0.0)
    yield from (check_state, check_stale, check_duration, spec_status, system)
    yield from _celery_backlog()


def _celery_backlog() -> Iterable[Metric]:
    """Messages waiting per Celery queue, when the broker is Redis (a list per queue)."""
    url = settings.CELERY_BROKER_URL
    if not url.startswith(("redis://", "rediss://", "unix://")):
        return
    backlog = GaugeMetricFamily("casehub_celery_queue_backlog", "Messages waiting in the Celery queue.",
                                labels=["queue"])
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in settings.CELERY_QUEUES_ALL:
            pipe.llen(queue)
        lengths = pipe.execute()
    except redis.RedisError:
        return  # a broker outage must not break the scrape; the redis check reports it
    finally:
        client.close()
    for queue, length in zip(settings.CELERY_QUEUES_ALL, lengths, strict=True):
        backlog.add_metric([queue], float(length))
    yield backlog
