"""Inventory metrics and demo data."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from apps.core.progress import SILENT
from apps.inventory import demo, metrics, services
from apps.inventory.models import IngestionRun, InventoryItem, Store
from apps.merchants import demo as merchants_demo
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items

pytestmark = pytest.mark.django_db


def scrape() -> str:
    class Collector:
        def collect(self):
            yield from metrics.collect()

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())
    return generate_latest(registry).decode()


def test_metrics_report_processed_items_runs_held_and_last_duration():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 4)
    for price in (1.0, 30.0):  # the second feed holds every price (30x)
        run = services.feed_submit_json(
            store=store, body=feed_body(feed_items(skus, price=price)), enqueue=False
        )
        services.ingestion_run_process(run_id=run.pk)
    IngestionRun.objects.create(store=store, source="csv", items_total=5)
    text = scrape()
    assert 'casehub_inventory_items_processed_total{source="api"} 8.0' in text
    assert 'casehub_inventory_runs{status="succeeded"} 2.0' in text
    assert 'casehub_inventory_runs{status="queued"} 1.0' in text
    assert "casehub_inventory_held_items 4.0" in text
    assert f'casehub_inventory_last_run_sla_met{{store="{store.pk}"}} 1.0' in text
    assert f'casehub_inventory_last_run_duration_seconds{{store="{store.pk}"}}' in text


def test_demo_seed_ingests_through_the_pipeline_and_is_idempotent():
    merchants_demo.seed(progress=SILENT)
    first = demo.seed(progress=SILENT)
    assert first["stores"] == Store.objects.count() >= 5
    assert first["inventory_items"] >= 5 * 1000 - 50
    assert first["held_items"] >= 2
    assert IngestionRun.objects.filter(status="succeeded").count() == first["runs"]
    again = demo.seed(progress=SILENT)
    assert again == first
    assert InventoryItem.objects.filter(display_status="held").count() == first["held_items"]
