"""Prometheus metrics of the whole app, gathered at scrape time.

Workers and web processes are many; counters kept in one process's memory would be wrong.
So an app with metrics registers a `collect() -> Iterable[prometheus_client.core.Metric]`,
computed from PostgreSQL or Redis (cheap, aggregate queries), in its `AppConfig.ready()`;
`/metrics` renders them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

Collect = Callable[[], Iterable[Metric]]

_collectors: list[Collect] = []


def register_collector(collect: Collect) -> Collect:
    """Add an app's collector (once, however often its `ready()` runs)."""
    if collect not in _collectors:
        _collectors.append(collect)
    return collect


def collectors() -> tuple[Collect, ...]:
    """The registered collectors, in registration order."""
    return tuple(_collectors)


class _AppCollector:
    def collect(self) -> Iterable[Metric]:
        for collect in _collectors:
            yield from collect()


def render_metrics() -> bytes:
    """The Prometheus text exposition of every app's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_AppCollector())
    return generate_latest(registry)
