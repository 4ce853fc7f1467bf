"""Inventory admin: review queue approve/reject, run progress bars, CSV upload, item lookup, models."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.core.models import LakeWatermark
from apps.inventory import services
from apps.inventory.models import IngestionRun, InventoryItem, OosModel
from tests.factories.accounts import UserFactory
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops_client(client):
    client.force_login(UserFactory(roles=["ops"]))
    return client


def ingest(store, items):
    run = services.feed_submit_json(store=store, body=feed_body(items), enqueue=False)
    services.ingestion_run_process(run_id=run.pk)
    return run


def held_store(count: int):
    store = StoreFactory()
    skus = catalog_create(store.merchant, count)
    ingest(store, feed_items(skus, price=1.0))
    ingest(store, feed_items(skus, price=50.0))  # 50x: every item held
    return store, skus


def test_review_queue_lists_held_items_and_approval_publishes(ops_client, django_assert_max_num_queries):
    store, skus = held_store(5)
    url = "/admin/inventory/store/review-queue/"
    ops_client.get(url)  # warm the session / permission caches
    # Pinned: session, user, permissions, count, one page with store and merchant joined (no N+1).
    with django_assert_max_num_queries(7):
        page = ops_client.get(url)
    assert page.status_code == 200
    assert page.content.decode().count('name="item"') == 5
    assert "held by price guardrail at run" in page.content.decode()

    response = ops_client.post(
        url, {"item": [f"{store.pk}|{skus[0]}", f"{store.pk}|{skus[1]}"], "decision": "approve"}
    )
    assert response.status_code == 302
    approved = InventoryItem.objects.get(store=store, sku=skus[0])
    assert (
        approved.display_status == "shown"
        and approved.price_cents == approved.attributes["review"]["held_price_cents"]
    )
    ops_client.post(url, {"item": [f"{store.pk}|{skus[2]}"], "decision": "reject"})
    assert InventoryItem.objects.get(store=store, sku=skus[2]).price_cents == 120  # 1.00 + 2 x 0.10
    assert InventoryItem.objects.filter(store=store, display_status="held").count() == 2


def test_agents_may_view_the_queue_but_not_decide(client):
    store, skus = held_store(1)
    client.force_login(UserFactory(roles=["agent"]))
    assert client.get("/admin/inventory/store/review-queue/").status_code == 200
    response = client.post(
        "/admin/inventory/store/review-queue/", {"item": [f"{store.pk}|{skus[0]}"], "decision": "approve"}
    )
    assert response.status_code == 403
    assert InventoryItem.objects.get(store=store, sku=skus[0]).display_status == "held"


def test_run_changelist_shows_progress_bars_with_pinned_queries(ops_client, django_assert_max_num_queries):
    store = StoreFactory()
    skus = catalog_create(store.merchant, 10)
    for _ in range(3):
        ingest(store, feed_items(skus))
    IngestionRun.objects.create(store=store, source="api", items_total=200, items_done=50)
    ops_client.get("/admin/inventory/ingestionrun/")
    with django_assert_max_num_queries(8):
        page = ops_client.get("/admin/inventory/ingestionrun/")
    html = page.content.decode()
    assert html.count('class="inventory-progress"') == 4
    assert 'title="50 of 200 items"' in html and "width:25%" in html
    run = IngestionRun.objects.filter(status="succeeded").first()
    detail = ops_client.get(f"/admin/inventory/ingestionrun/{run.pk}/change/").content.decode()
    assert 'title="10 of 10 items"' in detail


def test_csv_upload_in_admin_queues_a_run_or_shows_field_errors(
    ops_client, django_capture_on_commit_callbacks
):
    store = StoreFactory()
    skus = catalog_create(store.merchant, 2)
    url = f"/admin/inventory/store/{store.pk}/csv-upload/"
    good = SimpleUploadedFile(
        "f.csv", f"sku,price,available\n{skus[0]},1,1\n{skus[1]},2,0\n".encode(), "text/csv"
    )
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = ops_client.post(url, {"file": good})
    run = IngestionRun.objects.get(store=store)
    assert response.status_code == 302 and response.url.endswith(f"/ingestionrun/{run.pk}/change/")
    assert run.items_total == 2 and len(callbacks) == 1

    bad = SimpleUploadedFile("f.csv", b"sku,cost\n", "text/csv")
    response = ops_client.post(url, {"file": bad})
    assert response.status_code == 200
    assert "The header must contain: available, price (or unit_price)." in response.content.decode()
    assert IngestionRun.objects.filter(store=store).count() == 1


def test_item_lookup_answers_why_an_item_is_not_shown(ops_client):
    store, skus = held_store(1)
    page = ops_client.get(f"/admin/inventory/store/{store.pk}/item-lookup/?sku={skus[0]}").content.decode()
    reason = re.search(r'<td class="reason">(.*?)</td>', page).group(1)
    assert reason.startswith("not shown: held by price guardrail at run")
    page = ops_client.get(f"/admin/inventory/store/{store.pk}/item-lookup/?sku=NOPE").content.decode()
    assert "no feed of this store listed this SKU" in page


def test_model_admin_shows_held_out_accuracy_and_queues_training(
    ops_client, django_capture_on_commit_callbacks
):
    from apps.core.scheduling import task_send
    from apps.inventory.tasks import oos_model_train

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        page = ops_client.post("/admin/inventory/oosmodel/train/", follow=True).content.decode()
    assert "Training queued" in page
    # The Celery task trains, sent after the request commits.
    assert [(c.func, c.args) for c in callbacks] == [(task_send, (oos_model_train,))]
    assert not OosModel.objects.exists()
    OosModel.objects.create(
        version=1,
        algorithm="LogisticRegression",
        features=[],
        blob=b"x",
        train_samples=30,
        test_samples=10,
        accuracy=0.875,
        is_current=True,
    )
    page = ops_client.get("/admin/inventory/oosmodel/").content.decode()
    assert "87.5%" in page and "Train a new model now" in page


def test_requeue_action_gives_failed_runs_new_attempts(ops_client, django_capture_on_commit_callbacks):
    store = StoreFactory()
    failed = IngestionRun.objects.create(store=store, source="api", status="failed", attempts=3, error="boom")
    done = IngestionRun.objects.create(store=store, source="api", status="succeeded", attempts=1)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        ops_client.post(
            "/admin/inventory/ingestionrun/", {"action": "requeue", "_selected_action": [failed.pk, done.pk]}
        )
    failed.refresh_from_db()
    done.refresh_from_db()
    assert (failed.status, failed.attempts, failed.error) == ("queued", 0, "")
    assert done.status == "succeeded" and len(callbacks) == 1
    assert (failed.lake_position, failed.round_started_at) == (None, None)  # the lake never had it


def test_requeue_action_gives_an_exported_run_a_new_lake_position_and_refuses_one_being_written(ops_client):
    store = StoreFactory()
    exported, writing = [
        IngestionRun.objects.create(store=store, source="api", status="failed", attempts=3) for _ in range(2)
    ]
    # The export wrote the first run and has planned (not yet written) the range of the second.
    LakeWatermark.objects.create(stream="inventory_outcomes", position=exported.pk, pending_until=writing.pk)
    response = ops_client.post(
        "/admin/inventory/ingestionrun/",
        {"action": "requeue", "_selected_action": [exported.pk, writing.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert f"The lake export is writing run {writing.pk}" in page and "Re-queued 1 failed run(s)." in page
    exported.refresh_from_db()
    writing.refresh_from_db()
    assert exported.status == "queued" and exported.lake_position > writing.pk
    assert (writing.status, writing.lake_position) == ("failed", None)
    detail = ops_client.get(f"/admin/inventory/ingestionrun/{exported.pk}/change/").content.decode()
    assert "Lake position" in detail and str(exported.lake_position) in detail


def test_a_runs_raw_payload_downloads_until_purged(ops_client):
    from django.test import Client

    store = StoreFactory()
    skus = catalog_create(store.merchant, 2)
    body = feed_body(feed_items(skus))
    run = services.feed_submit_json(store=store, body=body, enqueue=False)
    detail = ops_client.get(f"/admin/inventory/ingestionrun/{run.pk}/change/").content.decode()
    assert f"/admin/inventory/ingestionrun/{run.pk}/payload/" in detail
    response = ops_client.get(f"/admin/inventory/ingestionrun/{run.pk}/payload/")
    assert response.status_code == 200 and b"".join(response.streaming_content) == body

    nobody = Client()
    nobody.force_login(UserFactory(is_staff=True))  # no inventory permissions
    assert nobody.get(f"/admin/inventory/ingestionrun/{run.pk}/payload/").status_code == 403

    IngestionRun.objects.filter(pk=run.pk).update(status="succeeded", payload_expires_at=run.created_at)
    services.inventory_purge_expired()
    assert ops_client.get(f"/admin/inventory/ingestionrun/{run.pk}/payload/").status_code == 404
    detail = ops_client.get(f"/admin/inventory/ingestionrun/{run.pk}/change/").content.decode()
    assert "purged (past its time-to-live)" in detail
