"""Scaled out: a backlog gives the same stores and per-store order with one worker process or
three, and no worker waits on a busy store; a worker with a local folder of its own processes a
feed another process received (payloads live in the database); the purge deletes them there."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from apps.core.management.commands.runstack import _commands
from apps.inventory import payloads, services
from apps.inventory.models import IngestionRun, InventoryItem, PayloadChunk, RunStatus
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items
from tests.utils.processes import celery_worker, scratch_var_dir
from tests.utils.waiting import wait_for

STORES, FEEDS, ITEMS = 4, 3, 120


def state(store) -> list[tuple]:
    return list(
        InventoryItem.objects.filter(store=store)
        .order_by("sku")
        .values_list("sku", "price_cents", "is_available", "display_status", "attributes", "fingerprint")
    )


def worker_log(node: str) -> str:
    return (Path(settings.STATIC_ROOT).parent / f"worker-{node.split('@')[0]}.log").read_text()


def backlog(stores, skus, workers: int) -> list[str]:
    """Start `workers` worker processes, send FEEDS feeds per store (interleaved across stores),
    wait for every run; the workers' logs."""
    with contextlib.ExitStack() as stack:
        nodes = [stack.enter_context(celery_worker(queues=["ingestion"], concurrency=1))[1]
                 for _ in range(workers)]
        for feed in range(FEEDS):
            for store in stores:
                body = feed_body(feed_items(skus, price=1 + feed, quantity=feed))
                services.feed_submit_json(store=store, body=body, batch_size=30)
        runs = IngestionRun.objects.filter(store__in=stores)
        wait_for(lambda: not runs.exclude(status=RunStatus.SUCCEEDED).exists(), what="the backlog")
    return [worker_log(node) for node in nodes]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_backlog_ends_the_same_with_one_or_three_workers_and_nobody_waits_on_a_busy_store():
    merchant = StoreFactory().merchant
    one = [StoreFactory(merchant=merchant) for _ in range(STORES)]
    three = [StoreFactory(merchant=merchant) for _ in range(STORES)]
    skus = catalog_create(merchant, ITEMS)
    logs = backlog(one, skus, workers=1) + backlog(three, skus, workers=3)

    for a, b in zip(one, three, strict=True):
        assert state(a) == state(b) and len(state(a)) == ITEMS
        for store in (a, b):
            runs = list(IngestionRun.objects.filter(store=store).order_by("id"))
            # Each run once, in submission order, one at a time (database clock on both sides).
            assert [run.attempts for run in runs] == [1] * FEEDS
            for earlier, later in zip(runs, runs[1:], strict=False):
                assert earlier.finished_at <= later.started_at
            # The last feed applied last: every item carries it.
            applied = InventoryItem.objects.filter(store=store).values_list("updated_run_id", flat=True)
            assert set(applied) == {runs[-1].pk}
    # No message was put back to wait for its store: the only retries a worker may log are
    # looks at a run another worker holds (its own message arriving while another runs it).
    retries = [line for log in logs for line in log.splitlines() if " retry: " in line]
    assert all("RunHeldElsewhere" in line for line in retries), retries


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_with_its_own_local_folder_processes_a_feed_received_elsewhere(monkeypatch):
    store = StoreFactory()
    skus = catalog_create(store.merchant, 50)
    run = services.feed_submit_json(store=store, body=feed_body(feed_items(skus)), enqueue=False)
    with scratch_var_dir() as elsewhere:
        # Another host: its own var folder (so media and any local file), the same database and broker.
        monkeypatch.setenv("CASEHUB_VAR_DIR", str(elsewhere))
        monkeypatch.setenv("DATABASE_URL", settings.DATABASE_URL)
        monkeypatch.setenv("REDIS_URL", settings.REDIS_URL)
        monkeypatch.setenv("DJANGO_SECRET_KEY", "test-only")
        with celery_worker(queues=["ingestion"], concurrency=1):
            from apps.inventory.tasks import ingestion_run_process

            ingestion_run_process.delay(run.pk)
            wait_for(lambda: IngestionRun.objects.filter(pk=run.pk, status=RunStatus.SUCCEEDED).exists(),
                     what="the run")
        assert not (elsewhere / "media" / "inventory").exists()
    run.refresh_from_db()
    assert (run.created, run.attempts) == (50, 1)
    assert state(store) and len(state(store)) == 50


@pytest.mark.django_db
def test_the_database_store_keeps_a_big_payload_in_chunks_reads_it_streamed_and_purges_it(monkeypatch):
    monkeypatch.setattr(payloads, "CHUNK_BYTES", 1000)  # a feed of many chunks, read a few at a time
    store = StoreFactory()
    skus = catalog_create(store.merchant, 300)
    body = "sku,price,available\n" + "".join(f"{sku},2.50,true\n" for sku in skus)
    old = services.feed_submit_csv(store=store, name="f.csv", content_type="text/csv", body=body.encode(),
                                   enqueue=False)
    chunks = PayloadChunk.objects.filter(name=old.payload_path)
    assert chunks.count() == -(-len(body) // 1000) > payloads.CHUNKS_PER_STATEMENT
    with services.payload_storage().open(old.payload_path) as fh:
        assert fh.read() == body.encode()
    assert services.ingestion_run_process(run_id=old.pk) == "succeeded"
    old.refresh_from_db()
    assert (old.created, old.rejected) == (300, 0)

    new = services.feed_submit_csv(store=store, name="f.csv", content_type="text/csv", body=body.encode(),
                                   enqueue=False)
    assert services.ingestion_run_process(run_id=new.pk) == "succeeded"
    IngestionRun.objects.filter(pk=old.pk).update(payload_expires_at=timezone.now() - timedelta(days=1))
    assert services.inventory_purge_expired()["payloads"] == 1
    assert not chunks.exists() and IngestionRun.objects.get(pk=old.pk).payload_path == ""
    assert PayloadChunk.objects.filter(name=new.payload_path).exists()


def test_make_run_workers_3_supervises_three_worker_processes_with_their_own_names():
    commands, _env = _commands("127.0.0.1", 8000, workers=3)
    workers = {name: argv for name, argv in commands.items() if name.startswith("worker")}
    assert list(workers) == ["worker", "worker-2", "worker-3"]
    nodes = [argv[argv.index("-n") + 1] for argv in workers.values()]
    assert len(set(nodes)) == 3 and "beat" in commands and "web" in commands
