"""Prometheus metrics of health: per-check status and duration, per-spec and system status.

Computed at scrape time from the denormalised latest status of each check (one query).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily, Metric

from apps.health.models import CheckStatus, HealthCheck, HealthSpec, OverallStatus
from apps.health.selectors import overall_status, system_status

CHECK_STATES = [*CheckStatus.values, "pending"]


def collect() -> Iterable[Metric]:
    check_status = GaugeMetricFamily(
        "casehub_health_check_status", "1 for the current status of the check's latest result, else 0.",
        labels=["spec", "check", "type", "status"])
    check_duration = GaugeMetricFamily(
        "casehub_health_check_duration_seconds", "Duration of the check's latest run.",
        labels=["spec", "check", "type"])
    spec_status = GaugeMetricFamily(
        "casehub_health_spec_status", "1 for the spec's overall status, else 0.", labels=["spec", "status"])
    system = GaugeMetricFamily(
        "casehub_health_system_status", "1 for the roll-up status over enabled specs, else 0.",
        labels=["status"])

    by_spec: dict[str, list[str]] = {name: [] for name in HealthSpec.objects.values_list("name", flat=True)}
    enabled = set(HealthSpec.objects.filter(enabled=True).values_list("name", flat=True))
    rows = HealthCheck.objects.values_list("spec__name", "name", "type", "last_status", "last_duration_ms")
    for spec, name, type_, status, duration_ms in rows:
        by_spec[spec].append(status)
        current = status or "pending"
        for state in CHECK_STATES:
            check_status.add_metric([spec, name, type_, state], 1.0 if state == current else 0.0)
        if duration_ms is not None:
            check_duration.add_metric([spec, name, type_], duration_ms / 1000)
    statuses = {}
    for spec, check_statuses in by_spec.items():
        statuses[spec] = overall_status(check_statuses)
        for state in OverallStatus.values:
            spec_status.add_metric([spec, state], 1.0 if state == statuses[spec] else 0.0)
    rollup = system_status(s for name, s in statuses.items() if name in enabled)
    for state in OverallStatus.values:
        system.add_metric([state], 1.0 if state == rollup else 0.0)
    yield from (check_status, check_duration, spec_status, system)
