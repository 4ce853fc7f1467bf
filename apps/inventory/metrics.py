"""Prometheus metrics of inventory ingestion, computed at scrape time from PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Count, Sum
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from apps.inventory.models import DisplayStatus, IngestionRun, InventoryItem, RunStatus


def collect() -> Iterable[Metric]:
    processed = CounterMetricFamily(
        "casehub_inventory_items_processed", "Feed items processed by ingestion runs.", labels=["source"]
    )
    for row in IngestionRun.objects.values("source").annotate(n=Sum("items_done")).order_by("source"):
        processed.add_metric([row["source"]], row["n"] or 0)
    yield processed

    runs = GaugeMetricFamily("casehub_inventory_runs", "Ingestion runs by status.", labels=["status"])
    counts = dict(IngestionRun.objects.values_list("status").annotate(n=Count("id")).order_by())
    for status in RunStatus.values:
        runs.add_metric([status], counts.get(status, 0))
    yield runs

    yield GaugeMetricFamily(
        "casehub_inventory_held_items",
        "Items whose price is held for review.",
        value=InventoryItem.objects.filter(display_status=DisplayStatus.HELD).count(),
    )

    duration = GaugeMetricFamily(
        "casehub_inventory_last_run_duration_seconds",
        "Duration of the last finished run of each store.",
        labels=["store"],
    )
    sla = GaugeMetricFamily(
        "casehub_inventory_last_run_sla_met",
        "1 if the last finished run of the store met its SLA.",
        labels=["store"],
    )
    last_runs = (
        IngestionRun.objects.filter(status=RunStatus.SUCCEEDED)
        .order_by("store_id", "-id")
        .distinct("store_id")
        .values_list("store_id", "duration_s", "sla_met")
    )
    for store_id, seconds, met in last_runs:
        duration.add_metric([str(store_id)], seconds or 0.0)
        sla.add_metric([str(store_id)], 1.0 if met else 0.0)
    yield duration
    yield sla
