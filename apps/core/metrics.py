"""Prometheus metrics of the whole app, gathered at scrape time.

Workers and web processes are many; counters kept in one process's memory would be wrong.
So every app exposes `collect() -> Iterable[prometheus_client.core.Metric]` computed from
PostgreSQL or Redis (cheap, aggregate queries), listed in COLLECTORS; `/metrics` renders them.
"""

from __future__ import annotations

from collections.abc import Iterable
from importlib.util import find_spec

from django.utils.module_loading import import_string
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

COLLECTORS = (
    "apps.health.metrics.collect",
    "apps.cases.metrics.collect",
    "apps.assignment.metrics.collect",
    "apps.inventory.metrics.collect",
    "apps.merchants.metrics.collect",
)


class _AppCollector:
    def collect(self) -> Iterable[Metric]:
        for path in COLLECTORS:
            if find_spec(path.rsplit(".", 1)[0]) is None:
                continue
            yield from import_string(path)()


def render_metrics() -> bytes:
    """The Prometheus text exposition of every app's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AppCollector())
    return generate_latest(registry)
