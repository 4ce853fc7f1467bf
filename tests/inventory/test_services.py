"""Ingestion services against real PostgreSQL: idempotency, rejections, guardrails, pricing, purge."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core.errors import ApplicationError
from apps.inventory import selectors, services
from apps.inventory.models import (
    CatalogItem,
    IngestionRun,
    InventoryItem,
    ItemRejection,
    PriceGuardrail,
    RunStatus,
    ShopperSignal,
    Store,
    Unit,
)
from apps.inventory.services import engine
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items

pytestmark = pytest.mark.django_db


def ingest(store, items, **kwargs) -> IngestionRun:
    run = services.feed_submit_json(store=store, body=feed_body(items), enqueue=False, **kwargs)
    assert services.ingestion_run_process(run_id=run.pk) == "succeeded"
    run.refresh_from_db()
    return run


def snapshot(store) -> list[tuple]:
    return list(
        InventoryItem.objects.filter(store=store)
        .order_by("sku")
        .values_list(
            "sku",
            "price_cents",
            "is_available",
            "display_status",
            "status_reason",
            "held_price_cents",
            "oos_score",
            "attributes",
            "updated_at",
        )
    )


def test_same_feed_twice_changes_nothing_the_second_time():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 250)
    items = feed_items(skus)
    first = ingest(store, items, batch_size=100)
    assert (first.received, first.created, first.updated, first.unchanged, first.rejected) == (
        250,
        250,
        0,
        0,
        0,
    )
    assert first.batches_done == 3 and first.items_done == first.items_total == 250
    assert first.status == RunStatus.SUCCEEDED and first.sla_met is True and first.duration_s >= 0
    before = snapshot(store)

    second = ingest(store, items, batch_size=100)
    assert (second.received, second.created, second.updated, second.unchanged) == (250, 0, 0, 250)
    assert snapshot(store) == before  # not even updated_at moved

    items[3]["price"] = 2.55
    third = ingest(store, items, batch_size=100)
    assert (third.created, third.updated, third.unchanged) == (0, 1, 249)
    assert InventoryItem.objects.get(store=store, sku=skus[3]).price_cents == 255


def test_a_run_slower_than_its_store_sla_is_marked_as_missing_it():
    store = StoreFactory(sla_seconds=1)
    skus = catalog_create(store.merchant, 3)
    run = services.feed_submit_json(store=store, body=feed_body(feed_items(skus)), enqueue=False)
    # The SLA counts from enqueue: a run that waited in the queue longer than that misses it.
    IngestionRun.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(seconds=5))
    assert services.ingestion_run_process(run_id=run.pk) == "succeeded"
    run.refresh_from_db()
    # The duration counts from start to finish, without the time spent waiting in the queue.
    assert run.sla_met is False and run.started_at - run.created_at >= timedelta(seconds=5)
    assert run.duration_s == pytest.approx((run.finished_at - run.started_at).total_seconds(), abs=0.5)
    assert ingest(store, feed_items(skus)).sla_met is True


def test_malformed_items_are_rejected_one_by_one_while_the_rest_apply():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 6)
    items = feed_items(skus)
    del items[0]["price"]
    items[1]["price"] = "abc"
    items[2]["available"] = "maybe"
    items.append({"sku": "NOT-IN-CATALOG", "price": 1})
    items.append("not an object")
    items.append(dict(items[5]))  # duplicate of the last good one
    run = ingest(store, items)
    assert run.received == 9 and run.rejected == 6 and run.created == 3
    assert run.rejected_by_reason == {
        "missing price": 1,
        "invalid price": 1,
        "invalid availability": 1,
        "unknown sku (not in catalog)": 1,
        "malformed item (not an object)": 1,
        "duplicate sku in feed": 1,
    }
    assert set(InventoryItem.objects.filter(store=store).values_list("sku", flat=True)) == set(skus[3:])
    answer = selectors.item_status(store=store, sku=skus[0])
    assert answer["shown"] is False
    assert answer["reason"] == f"rejected: missing price (run {run.pk})"
    assert selectors.item_status(store=store, sku=skus[4])["reason"] == "shown"


def test_items_the_database_cannot_store_are_rejected_without_failing_the_run():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 6)
    items = feed_items(skus)
    items[0]["sku"] = "SKU-\x00"  # PostgreSQL text holds no NUL
    items[1]["sku"] = "SKU-\ud800"  # a lone surrogate is not UTF-8
    items[2]["aisle"] = "7\x00"  # nor does JSONB hold \u0000
    items[3]["price"] = 10**400  # too big for a float
    items[4]["quantity"] = float("inf")  # JSON's 1e400
    body = feed_body(items).replace(b"Infinity", b"1e400")
    run = services.feed_submit_json(store=store, body=body, enqueue=False)
    assert services.ingestion_run_process(run_id=run.pk) == "succeeded"
    run.refresh_from_db()
    assert (run.received, run.created, run.attempts) == (6, 1, 1)
    assert run.rejected_by_reason == {
        "invalid sku (unprintable characters)": 2,
        "invalid aisle": 1,
        "invalid price": 1,
        "invalid quantity": 1,
    }
    assert list(InventoryItem.objects.filter(store=store).values_list("sku", flat=True)) == [skus[5]]
    assert set(ItemRejection.objects.filter(run_id=run.pk).values_list("sku", flat=True)) == {
        "SKU-\\x00",
        "SKU-\\ud800",
        *skus[2:5],
    }
    assert (
        selectors.item_status(store=store, sku=skus[2])["reason"] == f"rejected: invalid aisle (run {run.pk})"
    )

    # The same through a CSV upload (the csv module passes NUL through).
    body = f"sku,price,available\nBAD\x00SKU,1,yes\n{skus[0]},1.5,yes\n".encode()
    run = services.feed_submit_csv(
        store=store, name="f.csv", content_type="text/csv", body=body, enqueue=False
    )
    assert services.ingestion_run_process(run_id=run.pk) == "succeeded"
    run.refresh_from_db()
    assert run.rejected_by_reason == {"invalid sku (unprintable characters)": 1} and run.created == 1


def test_weighted_items_are_priced_from_unit_price_and_average_weight_with_store_markup():
    store = StoreFactory(price_markup_bps=500)  # +5 %
    CatalogItem.objects.create(
        merchant=store.merchant,
        sku="BANANA",
        name="Bananas",
        category="produce",
        unit=Unit.KG,
        average_weight=0.75,
    )
    CatalogItem.objects.create(merchant=store.merchant, sku="MILK", name="Milk", category="dairy")
    run = ingest(
        store,
        [
            {"sku": "BANANA", "unit_price": 2.40, "available": True},
            {"sku": "MILK", "price": 1.00, "available": True},
            {"sku": "BANANA2", "price": 1},
        ],
    )
    banana = InventoryItem.objects.get(store=store, sku="BANANA")
    assert banana.price_cents == 189  # 2.40/kg x 0.75 kg = 1.80, +5 % = 1.89
    assert banana.attributes["unit_price_cents"] == 240 and banana.attributes["average_weight"] == 0.75
    assert InventoryItem.objects.get(store=store, sku="MILK").price_cents == 105
    assert run.rejected == 1

    # A weighted item fed with a piece price (no unit price) is rejected with its reason.
    run = ingest(store, [{"sku": "BANANA", "price": 2.0, "available": True}])
    assert run.rejected_by_reason == {"missing unit price (weighted item)": 1}


def test_guardrail_holds_big_price_changes_and_approval_publishes():
    store = StoreFactory(max_price_ratio=10)
    skus = catalog_create(store.merchant, 3)
    PriceGuardrail.objects.create(category="grocery", ceiling_cents=50_000)  # all stores
    ingest(
        store,
        [{"sku": skus[0], "price": 1.00}, {"sku": skus[1], "price": 2.00}, {"sku": skus[2], "price": 3}],
    )

    run = ingest(
        store,
        [{"sku": skus[0], "price": 12.00}, {"sku": skus[1], "price": 0.10}, {"sku": skus[2], "price": 600}],
    )
    assert run.held == 3 and run.updated == 3
    held = {item.sku: item for item in InventoryItem.objects.filter(store=store)}
    assert held[skus[0]].display_status == "held" and held[skus[0]].price_cents == 100
    assert held[skus[0]].held_price_cents == 1200
    assert held[skus[0]].status_reason == (
        f"not shown: held by price guardrail at run {run.pk}: price change 1.00 -> 12.00 beyond 10x"
    )
    assert held[skus[1]].status_reason.endswith("price change 2.00 -> 0.10 beyond 10x")
    assert held[skus[2]].status_reason.endswith("price 600.00 above the grocery ceiling 500.00")
    assert list(selectors.held_items().values_list("sku", flat=True)) == skus

    # Re-feeding the same prices keeps them held without rewriting them (reason keeps run N).
    again = ingest(
        store,
        [{"sku": skus[0], "price": 12.00}, {"sku": skus[1], "price": 0.10}, {"sku": skus[2], "price": 600}],
    )
    assert (again.held, again.unchanged, again.updated) == (3, 3, 0)
    assert InventoryItem.objects.get(store=store, sku=skus[0]).status_reason.startswith(
        f"not shown: held by price guardrail at run {run.pk}"
    )

    assert services.held_items_approve(keys=[(store.pk, skus[0])], user="ops") == 1
    assert services.held_items_reject(keys=[(store.pk, skus[1])], user="ops") == 1
    approved = InventoryItem.objects.get(store=store, sku=skus[0])
    assert (approved.price_cents, approved.display_status, approved.held_price_cents) == (1200, "shown", None)
    assert approved.attributes["review"]["decision"] == "approved"
    rejected = InventoryItem.objects.get(store=store, sku=skus[1])
    assert (rejected.price_cents, rejected.display_status) == (200, "shown")
    # The approved price is now the reference: the same feed publishes it without holding again.
    after = ingest(store, [{"sku": skus[0], "price": 12.00}])
    assert after.held == 0
    assert InventoryItem.objects.get(store=store, sku=skus[0]).display_status == "shown"


def test_store_specific_guardrail_overrides_the_global_one():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 1, category="alcohol")
    PriceGuardrail.objects.create(category="alcohol", ceiling_cents=1000)
    PriceGuardrail.objects.create(store=store, category="alcohol", ceiling_cents=5000)
    run = ingest(store, [{"sku": skus[0], "price": 20}])
    assert run.held == 0


def test_new_item_above_ceiling_is_held_with_no_published_price_and_reject_hides_it():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 1)
    PriceGuardrail.objects.create(category="grocery", ceiling_cents=100)
    ingest(store, [{"sku": skus[0], "price": 9.99}])
    item = InventoryItem.objects.get(store=store, sku=skus[0])
    assert (item.price_cents, item.held_price_cents, item.display_status) == (None, 999, "held")
    services.held_items_reject(keys=[(store.pk, skus[0])], user="ops")
    item.refresh_from_db()
    assert item.display_status == "rejected" and "rejected by ops" in item.status_reason


def test_a_decided_held_price_leaves_the_item_shown_or_not_as_a_feed_would():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 2)
    ingest(store, [{"sku": skus[0], "price": 1, "available": False}, {"sku": skus[1], "price": 1}])
    for _ in range(3):
        services.shopper_signal_record(store=store, sku=skus[1], found=False)
    run = ingest(store, [{"sku": skus[0], "price": 50, "available": False}, {"sku": skus[1], "price": 50}])
    assert run.held == 2

    # A key listed twice is one item; a key that is not held is no item.
    assert services.held_items_approve(keys=[(store.pk, skus[0]), (store.pk, skus[0])], user="ops") == 1
    assert services.held_items_reject(keys=[(store.pk, skus[1]), (store.pk, "NOPE")], user="ops") == 1
    unavailable = InventoryItem.objects.get(store=store, sku=skus[0])
    assert (unavailable.price_cents, unavailable.held_price_cents, unavailable.display_status) == (
        5000,
        None,
        "unavailable",
    )
    assert unavailable.status_reason == "not shown: merchant reports unavailable"
    predicted = InventoryItem.objects.get(store=store, sku=skus[1])
    assert (predicted.price_cents, predicted.display_status) == (100, "predicted_oos")
    assert predicted.status_reason == "not shown: predicted out of stock (score 0.60)"
    review = predicted.attributes["review"]
    assert review.pop("at") and review == {"decision": "rejected", "by": "ops", "held_price_cents": 5000}
    assert predicted.fingerprint is None  # the next feed re-evaluates it


def test_unavailable_and_predicted_out_of_stock_are_not_shown_with_reasons():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 2)
    ingest(store, [{"sku": skus[0], "price": 1, "available": False}, {"sku": skus[1], "price": 1}])
    for _ in range(3):
        services.shopper_signal_record(store=store, sku=skus[1], found=False)
    run = ingest(store, [{"sku": skus[0], "price": 1, "available": False}, {"sku": skus[1], "price": 1}])
    assert run.prediction == "heuristic-v1" and run.predicted_oos == 2
    first = selectors.item_status(store=store, sku=skus[0])
    assert first["reason"] == "not shown: merchant reports unavailable" and first["oos_score"] == 0.9
    second = selectors.item_status(store=store, sku=skus[1])
    assert second["display_status"] == "predicted_oos"
    assert second["reason"] == "not shown: predicted out of stock (score 0.60)"


def test_each_batch_of_1000_items_costs_at_most_three_statements():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 6000)
    run = services.feed_submit_json(
        store=store, body=feed_body(feed_items(skus)), enqueue=False, batch_size=1000
    )
    with CaptureQueriesContext(connection) as queries:
        assert services.ingestion_run_process(run_id=run.pk) == "succeeded"
    # Savepoints only exist because the test runs inside a transaction; COPY is captured.
    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    copies = [sql for sql in statements if sql.startswith("COPY")]
    assert len(copies) == 6
    # Per run: claim, payload (one read from the payload store), context (catalog + prior state
    # + signals + guardrails + model), staging table, finish; per batch: COPY + one
    # upsert-and-progress statement.
    assert len(statements) == 5 + 2 * 6, statements
    assert len(statements) / 6 <= 3
    run.refresh_from_db()
    assert run.created == 6000

    with CaptureQueriesContext(connection) as queries:
        again = services.feed_submit_json(store=store, body=feed_body(feed_items(skus)), enqueue=False)
        services.ingestion_run_process(run_id=again.pk)
    # An unchanged re-feed copies nothing, folds its write-free batches into one commit and
    # reuses the session's staging table: claim, context, commit, finish.
    statements = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]
    assert not [sql for sql in statements if sql.startswith(("COPY", "CREATE"))]
    assert len([sql for sql in statements if "WITH staged" in sql]) == 1
    again.refresh_from_db()
    assert (again.unchanged, again.batches_done, again.items_done) == (6000, 6, 6000)


def test_failed_run_is_queued_for_retry_until_attempts_run_out():
    store = StoreFactory()
    catalog_create(store.merchant, 1)
    run = services.feed_submit_json(store=store, body=feed_body([]), enqueue=False)
    services.payload_storage().delete(run.payload_path)  # the payload vanished: every attempt fails
    outcomes = [services.ingestion_run_process(run_id=run.pk) for _ in range(4)]
    assert outcomes == ["retry", "retry", "failed", "skipped"]
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.attempts == 3 and "FileNotFoundError" in run.error


def test_stale_runs_are_requeued_and_then_resume():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 30)
    run = services.feed_submit_json(
        store=store, body=feed_body(feed_items(skus)), enqueue=False, batch_size=10
    )
    # Simulate a worker that committed one batch, then died.
    IngestionRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, attempts=1, heartbeat_at=timezone.now() - timedelta(hours=1)
    )
    assert services.ingestion_run_process(run_id=run.pk) == "succeeded"  # stale claims are allowed

    fresh = services.feed_submit_json(store=store, body=feed_body(feed_items(skus)), enqueue=False)
    IngestionRun.objects.filter(pk=fresh.pk).update(status=RunStatus.RUNNING, heartbeat_at=timezone.now())
    assert services.ingestion_run_process(run_id=fresh.pk) == "busy"  # alive elsewhere
    assert services.ingestion_runs_requeue_stale(stale_after_s=3600) == []
    assert services.ingestion_runs_requeue_stale(stale_after_s=0) == [fresh.pk]
    fresh.refresh_from_db()
    assert fresh.status == RunStatus.QUEUED


def test_csv_feed_is_checked_then_processed():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 2)
    body = f"SKU,price,available,aisle\n{skus[0]},1.25,yes,4B\n{skus[1]},,true,\n".encode()
    run = services.feed_submit_csv(
        store=store, name="feed.csv", content_type="text/csv", body=body, enqueue=False
    )
    assert run.items_total == 2
    assert services.ingestion_run_process(run_id=run.pk) == "succeeded"
    run.refresh_from_db()
    assert (run.created, run.rejected_by_reason) == (1, {"missing price": 1})
    item = InventoryItem.objects.get(store=store, sku=skus[0])
    assert item.price_cents == 125 and item.attributes == {"aisle": "4B"}

    cases = [
        ("feed.txt", "text/csv", b"sku,price,available\n", "must end with .csv"),
        ("feed.csv", "image/png", b"sku,price,available\n", "Unsupported content type"),
        ("feed.csv", "text/csv", b"\xff\xfe\x00bad", "not UTF-8"),
        ("feed.csv", "text/csv", b"sku,available\nA,1\n", "price (or unit_price)"),
    ]
    for name, content_type, payload, message in cases:
        with pytest.raises(ApplicationError) as exc:
            services.feed_submit_csv(
                store=store, name=name, content_type=content_type, body=payload, enqueue=False
            )
        assert message in exc.value.errors["file"][0]


def test_json_feed_edge_validation():
    store = StoreFactory()
    for body, field in ((b"{not json", "non_field_errors"), (b"[]", "items"), (b'{"items": 3}', "items")):
        with pytest.raises(ApplicationError) as exc:
            services.feed_submit_json(store=store, body=body, enqueue=False)
        assert field in exc.value.errors


def test_purge_enforces_ttls_in_batches():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 1)
    old = ingest(store, [{"sku": skus[0]}])  # rejected: missing price
    new = ingest(store, [{"sku": skus[0]}])
    past = timezone.now() - timedelta(days=400)
    IngestionRun.objects.filter(pk=old.pk).update(payload_expires_at=past)
    ItemRejection.objects.filter(run_id=old.pk).update(created_at=past)
    ShopperSignal.objects.create(store=store, sku=skus[0], found=True, created_at=past)
    ShopperSignal.objects.create(store=store, sku=skus[0], found=False, created_at=timezone.now())
    storage = services.payload_storage()
    assert storage.exists(old.payload_path)

    assert services.inventory_purge_expired(batch_size=1) == {"payloads": 1, "rejections": 1, "signals": 1}
    old.refresh_from_db()
    assert old.payload_path == "" and not storage.exists(
        IngestionRun.objects.get(pk=old.pk).payload_path or "inventory/none"
    )
    assert storage.exists(new.payload_path)
    assert list(ItemRejection.objects.values_list("run_id", flat=True)) == [new.pk]
    assert ShopperSignal.objects.count() == 1


def test_a_store_takes_its_items_with_it_and_the_database_refuses_orphans():
    store, other = StoreFactory(), StoreFactory()
    for each in (store, other):
        ingest(each, feed_items(catalog_create(each.merchant, 3, prefix=f"S{each.pk}-")))
    # Behind the ORM's back, the foreign key still holds: no item may outlive its store.
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        # Django's foreign keys are checked at commit; the test's transaction never commits.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("DELETE FROM inventory_ingestionrun WHERE store_id = %s", [store.pk])
        cursor.execute("DELETE FROM inventory_store WHERE id = %s", [store.pk])
    assert InventoryItem.objects.filter(store=store).count() == 3
    store.delete()  # what the admin does: the cascade removes its items and runs first
    assert not InventoryItem.objects.filter(store_id=store.pk).exists()
    assert InventoryItem.objects.filter(store=other).count() == 3


def blocked_by_us(pids: list[int], timeout: float = 30.0) -> bool:
    """Wait until another session waits for a lock this one holds; its thread appends its backend
    pid to `pids` once connected."""
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            if pids:
                cursor.execute("SELECT pg_backend_pid() = ANY(pg_blocking_pids(%s))", [pids[0]])
                if cursor.fetchone()[0]:
                    return True
            time.sleep(0.02)
    return False


@pytest.mark.django_db(transaction=True)
def test_a_store_deleted_while_a_batch_commits_is_refused_and_leaves_no_orphan():
    import threading

    store = StoreFactory()
    skus = catalog_create(store.merchant, 2)
    run = ingest(store, feed_items(skus[:1]))
    errors: list[BaseException] = []
    deleter_pid: list[int] = []

    def delete_store():
        try:
            connection.ensure_connection()
            deleter_pid.append(connection.connection.info.backend_pid)
            # A cascade in the order that loses a race: the items first (the batch's new one is not
            # visible yet), then the runs (waits for the batch to commit), then the store.
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute("DELETE FROM inventory_inventoryitem WHERE store_id = %s", [store.pk])
                cursor.execute("DELETE FROM inventory_ingestionrun WHERE store_id = %s", [store.pk])
                cursor.execute("DELETE FROM inventory_store WHERE id = %s", [store.pk])
        except BaseException as exc:  # surfaced by the assertions below
            errors.append(exc)
        finally:
            connection.close()

    with transaction.atomic():
        # What a batch statement does: write an item of the store, update (lock) its run's row.
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO inventory_inventoryitem (store_id, sku, price_cents, is_available, "
                "display_status, status_reason, attributes, updated_at) "
                "VALUES (%s, %s, 100, true, 'shown', '', '{}', now())",
                [store.pk, skus[1]],
            )
            cursor.execute(
                "UPDATE inventory_ingestionrun SET items_done = items_done WHERE id = %s", [run.pk]
            )
        deleter = threading.Thread(target=delete_store)
        deleter.start()
        assert blocked_by_us(deleter_pid), "the delete never waited for the batch's transaction"
        assert deleter.is_alive()
    deleter.join(10)
    assert not deleter.is_alive()
    # The late delete saw the committed item and was refused whole: nothing half-deleted, no orphan.
    assert len(errors) == 1 and isinstance(errors[0], IntegrityError)
    assert set(InventoryItem.objects.filter(store_id=store.pk).values_list("sku", flat=True)) == set(skus)
    assert Store.objects.filter(pk=store.pk).exists()


def test_runs_of_one_store_apply_one_at_a_time_oldest_first():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 3)
    older = services.feed_submit_json(store=store, body=feed_body(feed_items(skus, price=1)), enqueue=False)
    newer = services.feed_submit_json(store=store, body=feed_body(feed_items(skus, price=2)), enqueue=False)
    other_store = StoreFactory(merchant=store.merchant)
    other = services.feed_submit_json(store=other_store, body=feed_body(feed_items(skus)), enqueue=False)

    # A worker that picks the newer feed first does not run it (it would be overwritten)...
    assert services.ingestion_run_process(run_id=newer.pk) == "waiting"
    newer.refresh_from_db()
    assert (newer.status, newer.attempts) == (RunStatus.QUEUED, 0)
    assert not InventoryItem.objects.filter(store=store).exists()
    # ...and takes the next runnable run instead, oldest first; the newer one is never a candidate.
    assert services.ingestion_run_process_next() == (older.pk, "succeeded")
    assert services.ingestion_run_process_next() == (newer.pk, "succeeded")
    assert services.ingestion_run_process_next() == (other.pk, "succeeded")
    assert services.ingestion_run_process_next() is None
    assert set(InventoryItem.objects.filter(store=store).values_list("price_cents", flat=True)) == {
        200,
        210,
        220,
    }


def test_copy_text_loads_exactly_what_psycopgs_own_copy_would():
    rows = [
        ("A\\B", 100, True, "shown", "", None, 0.1, '{"aisle":"a\\"b\\\\c"}', 7, None),
        (
            "B",
            None,
            False,
            "held",
            "not shown: held by cat\twith tabs\nnewline\r\\ ",
            250,
            0.95,
            "{}",
            -5,
            None,
        ),
        ("C\\x00", None, None, None, None, None, None, None, None, "invalid sku (unprintable characters)"),
        (
            "D é",
            5,
            True,
            "predicted_oos",
            "not shown: predicted (score 0.60)",
            None,
            0.6,
            '{"q":3}',
            2**62,
            None,
        ),
    ]
    with connection.cursor() as cursor:
        engine.stage_table_create(cursor)
        loaded = []
        for send in ("ours", "psycopg"):
            if send == "ours":
                engine.stage_copy(cursor, services.copy_text(rows))
            else:
                with cursor.copy(engine.COPY_SQL) as copy:
                    for row in rows:
                        copy.write_row(row)
            cursor.execute("SELECT * FROM inventory_stage ORDER BY sku")
            loaded.append(cursor.fetchall())
            cursor.execute("DELETE FROM inventory_stage")
    assert loaded[0] == loaded[1]
    assert [row[0] for row in loaded[0]] == ["A\\B", "B", "C\\x00", "D é"]
    assert json.loads(loaded[0][0][7]) == {"aisle": 'a"b\\c'} and loaded[0][1][4].endswith("newline\r\\ ")
