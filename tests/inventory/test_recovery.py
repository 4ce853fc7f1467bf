"""Fast recovery and honest submits: a killed worker's run resumes within 30 s (by its own
heartbeat, through the beat job or a redelivered message), a slow commit keeps heartbeating, and
a feed accepted while the broker is down answers 202 and is sent later by the requeue job."""

from __future__ import annotations

import base64
import contextlib
import importlib
import json
import logging
import os
import signal
import socket
import threading
from datetime import timedelta

import pytest
import redis
from django.db import connections
from django.utils import timezone

from apps.inventory import conf, services
from apps.inventory.models import IngestionRun, InventoryItem, RunStatus
from apps.inventory.tasks import ingestion_run_process
from tests.factories.accounts import MerchantUserFactory
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items
from tests.utils.processes import celery_worker
from tests.utils.waiting import wait_for

# The stale window config/settings.py sets by default (max(10 s, 5 heartbeats) and some slack).
STALE_AFTER_S = 15
ITEMS, BATCH = 400, 40


@pytest.fixture(autouse=True)
def _stale_window(settings, monkeypatch):
    settings.INVENTORY_STALE_AFTER_S = STALE_AFTER_S
    monkeypatch.setenv("INVENTORY_STALE_AFTER_S", str(STALE_AFTER_S))  # the workers' settings


# Kombu's Redis keys: the queue, and the messages a worker took but has not acknowledged.
BROKER_KEYS = ("ingestion", "unacked", "unacked_index")


@pytest.fixture
def ingestion_queue():
    """The broker's `ingestion` queue, emptied before and after: what a test sends is its own, and
    a killed worker's unacknowledged message is not handed to a later test's worker."""
    from config.celery import app

    client = redis.Redis.from_url(app.conf.broker_url)
    client.delete(*BROKER_KEYS)
    yield client
    client.delete(*BROKER_KEYS)
    client.close()


def sent_runs(client) -> list[int]:
    """The run ids of the ingestion messages waiting in the broker (kombu's Redis format)."""
    runs = []
    for raw in client.lrange("ingestion", 0, -1):
        message = json.loads(raw)
        assert message["headers"]["task"] == "apps.inventory.tasks.ingestion_run_process"
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        runs.append(args[0])
    return runs


@contextlib.contextmanager
def broker_down():
    """Point this process's Celery app at a closed port, as when the broker is down."""
    from config.celery import app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    url = app.conf.broker_url

    def connect_to(broker_url: str) -> None:
        # The app keeps its connection and producer pools: new ones are made for the new URL.
        app.conf.broker_url = broker_url
        app._pool = None
        app.amqp._producer_pool = None

    connect_to(f"redis://127.0.0.1:{closed_port}/0")
    try:
        yield
    finally:
        connect_to(url)


def test_the_stale_window_follows_the_heartbeat_and_never_undercuts_it(settings):
    assert conf.stale_after_s() == STALE_AFTER_S
    settings.INVENTORY_STALE_AFTER_S = 1  # a misconfiguration would take live runs from their workers
    assert conf.stale_after_s() == max(10, 5 * conf.HEARTBEAT_S)


@pytest.mark.django_db(transaction=True)
def test_a_feed_accepted_while_the_broker_is_down_answers_202_and_the_requeue_job_sends_it(
    api_client, ingestion_queue, caplog
):
    member = MerchantUserFactory()
    store = StoreFactory(merchant=member.merchant)
    api_client.force_authenticate(member.user)
    body = feed_body(feed_items(catalog_create(store.merchant, 3)))
    with broker_down(), caplog.at_level(logging.WARNING, logger="apps.core.scheduling"):
        # Committed, then the send fails inside the request: still the 202 with the run's id.
        response = api_client.post(
            f"/api/v1/inventory/stores/{store.pk}/feeds/", data=body, content_type="application/json"
        )
        assert response.status_code == 202, response.content
        run = IngestionRun.objects.get(pk=response.json()["run_id"])
        assert run.status == RunStatus.QUEUED and sent_runs(ingestion_queue) == []
        assert "not sent: the broker is unreachable" in caplog.text

        # The requeue job's own sends fail the same way while the broker is still down.
        IngestionRun.objects.filter(pk=run.pk).update(heartbeat_at=run.heartbeat_at - timedelta(seconds=16))
        assert services.ingestion_runs_requeue_stale() == [run.pk]
        assert sent_runs(ingestion_queue) == []

    # Broker back: once the heartbeat (the last attempt) is stale again, the run is sent.
    assert services.ingestion_runs_requeue_stale() == []
    IngestionRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=16))
    assert services.ingestion_runs_requeue_stale() == [run.pk]
    assert sent_runs(ingestion_queue) == [run.pk]
    run.refresh_from_db()
    assert (run.status, run.attempts) == (RunStatus.QUEUED, 0)


@pytest.mark.django_db
def test_a_redelivered_message_looks_again_when_the_heartbeat_turns_stale_not_later():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 3)
    run = services.feed_submit_json(store=store, body=feed_body(feed_items(skus)), enqueue=False)
    beat = timezone.now() - timedelta(seconds=5)
    IngestionRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, attempts=1, heartbeat_at=beat)

    # Its worker's heartbeat is 5 s old: not claimable yet, looked at again ~10 s on.
    assert services.ingestion_run_process(run_id=run.pk) == "busy"
    countdown, seen = services.ingestion_run_busy_retry(run_id=run.pk)
    assert STALE_AFTER_S - 5 <= countdown <= STALE_AFTER_S - 5 + 1 and seen == beat.isoformat()
    # The heartbeat moved on meanwhile: a live worker holds the run, this message is not needed.
    IngestionRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
    assert services.ingestion_run_busy_retry(run_id=run.pk, seen_heartbeat=seen) is None

    # Stale: the message claims at once and resumes the run.
    IngestionRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(seconds=STALE_AFTER_S + 1)
    )
    assert services.ingestion_run_process(run_id=run.pk) == "succeeded"
    run.refresh_from_db()
    assert (run.attempts, run.created) == (2, 3)
    assert services.ingestion_run_busy_retry(run_id=run.pk) is None


@pytest.mark.django_db(transaction=True)
def test_a_commit_blocked_longer_than_the_stale_window_keeps_its_run_heartbeating():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 80)
    first = services.feed_submit_json(store=store, body=feed_body(feed_items(skus)), enqueue=False)
    assert services.ingestion_run_process(run_id=first.pk) == "succeeded"
    repriced = services.feed_submit_json(
        store=store, body=feed_body(feed_items(skus, price=2.99)), batch_size=BATCH, enqueue=False
    )
    # Another session locks the store's items: the run's first commit waits for it.
    holder = connections.create_connection("default")
    outcome: list[str] = []

    def process() -> None:
        try:
            outcome.append(services.ingestion_run_process(run_id=repriced.pk))
        finally:
            connections.close_all()

    try:
        with holder.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("SELECT 1 FROM inventory_inventoryitem WHERE store_id = %s FOR UPDATE", [store.pk])
            worker = threading.Thread(target=process)
            worker.start()
            # Blocked for 3 s and more, by the run's own timestamps, with no batch committed...
            def heartbeating_for_3_s():
                run = IngestionRun.objects.get(pk=repriced.pk)
                started = run.status == RunStatus.RUNNING
                return started and run.heartbeat_at - run.started_at >= timedelta(seconds=3) and run

            run = wait_for(heartbeating_for_3_s, what="three seconds of heartbeats")
            assert run.batches_done == 0
            # ...yet alive by its heartbeat: a 2 s stale window leaves it alone.
            assert services.ingestion_runs_requeue_stale(stale_after_s=2) == []
            cursor.execute("ROLLBACK")
        worker.join(60)
    finally:
        holder.close()
    assert outcome == ["succeeded"]
    run.refresh_from_db()
    assert (run.attempts, run.updated, run.items_done) == (1, 80, 80)


def _install_requeue_beat_schedule() -> None:
    """The requeue job's beat schedule as the migrations install it (a transactional test's
    flush empties the table), and nothing else for the test's beat to send."""
    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    PeriodicTask.objects.all().delete()
    importlib.import_module("apps.inventory.migrations.0002_beat_schedules").create(apps, None)
    importlib.import_module("apps.inventory.migrations.0005_requeue_stale_every_5s").forwards(apps, None)
    PeriodicTask.objects.exclude(task="apps.inventory.tasks.ingestion_runs_requeue_stale").delete()


def _killed_mid_run(monkeypatch) -> tuple[IngestionRun, list[str]]:
    """A run whose worker is killed (SIGKILL) mid-way; the run as its dead worker left it."""
    store = StoreFactory()
    skus = catalog_create(store.merchant, ITEMS)
    run = services.feed_submit_json(
        store=store, body=feed_body(feed_items(skus)), batch_size=BATCH, enqueue=False
    )
    # Slow the worker down (40 items per batch, 0.3 s after each) so it is killed mid-run.
    monkeypatch.setenv("INVENTORY_THROTTLE_S", "0.3")
    with celery_worker(queues=["ingestion"], concurrency=1) as (proc, _node):
        ingestion_run_process.delay(run.pk)
        wait_for(lambda: IngestionRun.objects.get(pk=run.pk).batches_done >= 3, what="three batches")
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    monkeypatch.setenv("INVENTORY_THROTTLE_S", "0")
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and 3 <= run.batches_done < ITEMS // BATCH
    return run, skus


def _assert_resumed_within_30_s(killed: IngestionRun, skus: list[str]) -> None:
    run = IngestionRun.objects.get(pk=killed.pk)
    assert (run.status, run.attempts) == (RunStatus.SUCCEEDED, 2)
    assert (run.items_done, run.received, run.created, run.rejected) == (ITEMS, ITEMS, ITEMS, 0)
    assert InventoryItem.objects.filter(store_id=run.store_id).count() == ITEMS
    # The dead worker's last heartbeat came before the kill: the run finished under 30 s after it.
    resumed_after = run.finished_at - killed.heartbeat_at
    assert resumed_after < timedelta(seconds=30), resumed_after


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_killed_workers_run_is_resumed_by_the_beat_job_within_30_seconds(monkeypatch, ingestion_queue):
    _install_requeue_beat_schedule()
    killed, skus = _killed_mid_run(monkeypatch)
    # A new worker with a beat: the 5 s stale check finds the silent run and queues it again.
    with celery_worker(queues=["ingestion"], concurrency=1, extra_args=["--beat"]):
        wait_for(
            lambda: IngestionRun.objects.filter(pk=killed.pk, status=RunStatus.SUCCEEDED).exists(),
            what="the resumed run",
        )
    _assert_resumed_within_30_s(killed, skus)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_redelivered_message_resumes_a_killed_workers_run_within_30_seconds(monkeypatch, ingestion_queue):
    killed, skus = _killed_mid_run(monkeypatch)
    # The broker hands the message out again (as on redelivery after the worker died); no beat.
    ingestion_run_process.delay(killed.pk)
    with celery_worker(queues=["ingestion"], concurrency=1):
        wait_for(
            lambda: IngestionRun.objects.filter(pk=killed.pk, status=RunStatus.SUCCEEDED).exists(),
            what="the resumed run",
        )
    _assert_resumed_within_30_s(killed, skus)
