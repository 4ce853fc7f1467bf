"""Prometheus metrics of the whole app, gathered at scrape time.

Workers and web processes are many; counters kept in one process's memory would be wrong.
So an app with metrics registers a `collect() -> Iterable[prometheus_client.core.Metric]`,
computed from PostgreSQL or Redis (cheap, aggregate queries), in its `AppConfig.ready()`;
`/metrics` renders them all. Each collector runs on its own: one that fails (its database or
Redis is down) is left out and reported by `casehub_metrics_collector_up`, the rest still answer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connection
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

logger = logging.getLogger(__name__)

Collect = Callable[[], Iterable[Metric]]

# A scrape's queries are cancelled by the server past this: a lock wait or a slow plan must not
# hold the scrape (and its web worker) longer than Prometheus waits for it.
STATEMENT_TIMEOUT_MS = 5_000

_collectors: dict[Collect, str] = {}


def register_collector(collect: Collect, *, name: str | None = None) -> Collect:
    """Add an app's collector (once, however often its `ready()` runs). `name` labels it in
    `casehub_metrics_collector_up`; by default its module, less `apps.` and `.metrics`."""
    if collect not in _collectors:
        _collectors[collect] = name or collect.__module__.removeprefix("apps.").removesuffix(".metrics")
    return collect


def collectors() -> tuple[Collect, ...]:
    """The registered collectors, in registration order."""
    return tuple(_collectors)


@contextmanager
def _statement_timeout(ms: int) -> Iterator[None]:
    """Bound every query run inside on the server. Set on the first query only, so a collector that
    never touches the database never needs it (it may be the one thing that is down)."""
    applied = False

    def apply(execute, sql, params, many, context):
        nonlocal applied
        if not applied:
            applied = True
            context["cursor"].cursor.execute(f"SET statement_timeout = {int(ms)}")
        return execute(sql, params, many, context)

    try:
        with connection.execute_wrapper(apply):
            yield
    finally:
        if applied:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("RESET statement_timeout")  # the connection outlives this scrape
            except DatabaseError:
                connection.close()  # broken anyway; a fresh one starts without the timeout


def _lake_collect() -> Iterable[Metric]:
    from apps.core.lake import lake_lag_seconds

    lag = GaugeMetricFamily("casehub_lake_export_lag_seconds",
                            "Age of the oldest row of a lake stream not yet exported (0 when up to date).",
                            labels=["stream"])
    for stream, seconds in lake_lag_seconds().items():
        lag.add_metric([stream], seconds)
    yield lag


# Gauges of the platform itself (no app owns them): run after the apps' collectors, reported the same way.
_core_collectors: dict[Collect, str] = {_lake_collect: "lake"}


class _AppCollector:
    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("casehub_metrics_collector_up",
                               "1 if the collector answered this scrape; 0 if it failed and is left out.",
                               labels=["collector"])
        took = GaugeMetricFamily("casehub_metrics_collector_duration_seconds",
                                 "Time the collector took in this scrape.", labels=["collector"])
        for collect, name in [*_collectors.items(), *_core_collectors.items()]:
            started = time.perf_counter()
            try:
                with _statement_timeout(STATEMENT_TIMEOUT_MS):
                    # Whole or not at all: half of a collector's families would read as real zeros.
                    metrics = list(collect())
            except Exception:  # a database, Redis or coding error in one app; the others still answer
                logger.exception("metrics collector %s failed; left out of this scrape", name)
                metrics, ok = [], False
            else:
                ok = True
            up.add_metric([name], 1.0 if ok else 0.0)
            took.add_metric([name], time.perf_counter() - started)
            yield from metrics
        yield up
        yield took


def render_metrics() -> bytes:
    """The Prometheus text exposition of every app's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AppCollector())
    return generate_latest(registry)
