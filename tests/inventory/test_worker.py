"""A real Celery worker processes feeds; killed mid-run, the run resumes with the same result."""

from __future__ import annotations

import os
import signal

import pytest

from apps.inventory import services
from apps.inventory.models import IngestionRun, InventoryItem, RunStatus
from apps.inventory.tasks import ingestion_run_process
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items
from tests.utils.processes import celery_worker
from tests.utils.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def state(store) -> list[tuple]:
    return list(
        InventoryItem.objects.filter(store=store)
        .order_by("sku")
        .values_list(
            "sku",
            "price_cents",
            "is_available",
            "display_status",
            "held_price_cents",
            "oos_score",
            "attributes",
            "fingerprint",
        )
    )


def test_feed_through_the_api_is_processed_by_a_real_worker(celery_worker, api_client):
    from tests.factories.accounts import MerchantUserFactory

    member = MerchantUserFactory()
    store = StoreFactory(merchant=member.merchant)
    skus = catalog_create(store.merchant, 50)
    api_client.force_authenticate(member.user)
    response = api_client.post(
        f"/api/v1/inventory/stores/{store.pk}/feeds/",
        data=feed_body(feed_items(skus)),
        content_type="application/json",
    )
    assert response.status_code == 202
    run = IngestionRun.objects.get(pk=response.json()["run_id"])
    wait_for(
        lambda: IngestionRun.objects.filter(pk=run.pk, status=RunStatus.SUCCEEDED).exists(), what="the run"
    )
    run.refresh_from_db()
    assert (run.created, run.items_done, run.attempts) == (50, 50, 1)
    assert InventoryItem.objects.filter(store=store).count() == 50


def test_worker_killed_mid_run_resumes_with_no_duplicate_or_lost_items(monkeypatch):
    clean_store = StoreFactory()
    store = StoreFactory(merchant=clean_store.merchant)
    skus = catalog_create(store.merchant, 400)
    items = feed_items(skus)
    items[7]["price"] = "oops"  # a rejection...
    items.append(dict(items[3]))  # ...and a duplicate in the last batch, which must stay rejected
    body = feed_body(items)

    clean = services.feed_submit_json(store=clean_store, body=body, batch_size=40, enqueue=False)
    assert services.ingestion_run_process(run_id=clean.pk) == "succeeded"
    clean.refresh_from_db()

    # Slow the worker down (40 items per batch, 0.3 s after each) so it can be killed mid-run.
    monkeypatch.setenv("INVENTORY_THROTTLE_S", "0.3")
    run = services.feed_submit_json(store=store, body=body, batch_size=40, enqueue=False)
    with celery_worker(queues=["ingestion"], concurrency=1) as (proc, _node):
        ingestion_run_process.delay(run.pk)
        wait_for(lambda: IngestionRun.objects.get(pk=run.pk).batches_done >= 2, what="two batches")
        beat = IngestionRun.objects.get(pk=run.pk).heartbeat_at
        wait_for(lambda: IngestionRun.objects.get(pk=run.pk).batches_done >= 3, what="three batches")
        # Alive: it heartbeats with every batch, so the stale check leaves it alone.
        assert IngestionRun.objects.get(pk=run.pk).heartbeat_at > beat
        assert services.ingestion_runs_requeue_stale(stale_after_s=2) == []
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and 3 <= run.batches_done < 11
    killed_at = run.batches_done
    # Committed batches and the progress counters agree: nothing half-applied.
    assert InventoryItem.objects.filter(store=store).count() == run.created
    assert run.items_done == killed_at * 40

    # The beat job notices the silent heartbeat (once 2 s old) and re-queues; a new worker resumes.
    requeued = wait_for(lambda: services.ingestion_runs_requeue_stale(stale_after_s=2), what="a stale run")
    assert requeued == [run.pk]
    monkeypatch.setenv("INVENTORY_THROTTLE_S", "0")
    with celery_worker(queues=["ingestion"], concurrency=1):
        wait_for(
            lambda: IngestionRun.objects.filter(pk=run.pk, status=RunStatus.SUCCEEDED).exists(),
            what="the resumed run",
        )
    run.refresh_from_db()
    assert run.attempts == 2 and run.batches_done == 11
    assert (run.received, run.created, run.rejected, run.rejected_by_reason) == (
        clean.received,
        clean.created,
        clean.rejected,
        clean.rejected_by_reason,
    )
    assert run.rejected_by_reason == {"invalid price": 1, "duplicate sku in feed": 1}
    assert state(store) == state(clean_store)


def test_the_out_of_stock_model_is_trained_by_the_celery_task_on_a_real_worker(celery_worker):
    from apps.inventory.models import OosModel
    from apps.inventory.tasks import oos_model_train
    from tests.inventory.test_model import history

    store = StoreFactory()
    history(store, catalog_create(store.merchant, 20))
    oos_model_train.delay()
    model = wait_for(lambda: OosModel.objects.filter(is_current=True).first(), what="a trained model")
    assert model.version == 1 and model.test_samples == 75 and model.accuracy > 0.75
