"""Inventory API: feeds accepted at once, merchant scoping, CSV checks, signals, item status."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.inventory import services
from apps.inventory.models import IngestionRun, InventoryItem, ShopperSignal
from tests.factories.accounts import MerchantUserFactory, UserFactory
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items

pytestmark = pytest.mark.django_db

BASE = "/api/v1/inventory"


@pytest.fixture
def merchant_user():
    return MerchantUserFactory()


@pytest.fixture
def store(merchant_user):
    return StoreFactory(merchant=merchant_user.merchant)


def test_json_feed_answers_202_with_a_run_id_and_enqueues_after_commit(
    api_client, merchant_user, store, django_capture_on_commit_callbacks
):
    skus = catalog_create(store.merchant, 3)
    api_client.force_authenticate(merchant_user.user)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = api_client.post(
            f"{BASE}/stores/{store.pk}/feeds/",
            data=feed_body(feed_items(skus)),
            content_type="application/json",
        )
    assert response.status_code == 202, response.content
    run = IngestionRun.objects.get(pk=response.json()["run_id"])
    assert response.json() == {"run_id": run.pk, "status": "queued", "items_total": 3}
    assert len(callbacks) == 1  # the task is sent only once the run is committed
    assert run.payload_path.endswith(".json") and run.payload_expires_at > run.created_at
    with services.payload_storage().open(run.payload_path, "rb") as fh:
        assert json.load(fh)["items"][0]["sku"] == skus[0]  # raw payload persisted before processing

    services.ingestion_run_process(run_id=run.pk)
    runs = api_client.get(f"{BASE}/stores/{store.pk}/runs/").json()["results"]
    assert runs[0]["status"] == "succeeded" and runs[0]["created"] == 3 and runs[0]["progress_pct"] == 100
    assert api_client.get(f"{BASE}/runs/{run.pk}/").json()["items_done"] == 3


def test_feed_validation_errors_are_field_level(api_client, merchant_user, store):
    api_client.force_authenticate(merchant_user.user)
    response = api_client.post(
        f"{BASE}/stores/{store.pk}/feeds/", data=b'{"rows": []}', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"items": ["This field is required."]}
    response = api_client.post(f"{BASE}/stores/{store.pk}/feeds/", data=b"sku,price", content_type="text/csv")
    assert response.status_code == 415


def test_a_merchant_never_sees_or_feeds_another_merchants_store(api_client, merchant_user, store):
    other = StoreFactory()
    skus = catalog_create(other.merchant, 1)
    run = services.feed_submit_json(store=other, body=feed_body(feed_items(skus)), enqueue=False)
    services.ingestion_run_process(run_id=run.pk)
    api_client.force_authenticate(merchant_user.user)

    assert [row["id"] for row in api_client.get(f"{BASE}/stores/").json()["results"]] == [store.pk]
    for url in (
        f"stores/{other.pk}/items/",
        f"stores/{other.pk}/items/{skus[0]}/",
        f"stores/{other.pk}/runs/",
        f"runs/{run.pk}/",
    ):
        assert api_client.get(f"{BASE}/{url}").status_code == 404, url
    response = api_client.post(
        f"{BASE}/stores/{other.pk}/feeds/", data=feed_body([]), content_type="application/json"
    )
    assert response.status_code == 404
    assert IngestionRun.objects.filter(store=other).count() == 1


def test_staff_need_inventory_permissions(api_client, store):
    nobody = UserFactory(is_staff=True)
    api_client.force_authenticate(nobody)
    assert api_client.get(f"{BASE}/stores/").json()["results"] == []
    agent = UserFactory(roles=["agent"])  # inventory.view_* only
    api_client.force_authenticate(agent)
    assert [row["id"] for row in api_client.get(f"{BASE}/stores/").json()["results"]] == [store.pk]
    response = api_client.post(
        f"{BASE}/stores/{store.pk}/feeds/", data=feed_body([]), content_type="application/json"
    )
    assert response.status_code == 403
    ops = UserFactory(roles=["ops"])
    api_client.force_authenticate(ops)
    response = api_client.post(
        f"{BASE}/stores/{store.pk}/feeds/", data=feed_body([]), content_type="application/json"
    )
    assert response.status_code == 202


def test_csv_upload_endpoint_checks_the_file(api_client, merchant_user, store):
    skus = catalog_create(store.merchant, 2)
    api_client.force_authenticate(merchant_user.user)
    url = f"{BASE}/stores/{store.pk}/feeds/csv/"
    good = SimpleUploadedFile(
        "feed.csv",
        f"sku,price,available\n{skus[0]},1.5,true\n{skus[1]},2,no\n".encode(),
        content_type="text/csv",
    )
    response = api_client.post(url, {"file": good}, format="multipart")
    assert response.status_code == 202 and response.json()["items_total"] == 2
    assert IngestionRun.objects.get(pk=response.json()["run_id"]).source == "csv"

    bad_header = SimpleUploadedFile("feed.csv", b"name,cost\nx,1\n", content_type="text/csv")
    response = api_client.post(url, {"file": bad_header}, format="multipart")
    assert response.status_code == 400
    assert response.json()["errors"]["file"] == [
        "The header must contain: sku, available, price (or unit_price)."
    ]
    binary = SimpleUploadedFile("feed.csv", b"\x89PNG\r\n\x1a\n\xff\xd8", content_type="text/csv")
    assert api_client.post(url, {"file": binary}, format="multipart").json()["errors"]["file"] == [
        "The file is not UTF-8 text."
    ]
    assert api_client.post(url, {}, format="multipart").status_code == 400


def test_item_list_and_status_explain_why_an_item_is_not_shown(
    api_client, merchant_user, store, django_assert_num_queries
):
    skus = catalog_create(store.merchant, 30)
    items = feed_items(skus)
    items[1]["available"] = False
    del items[2]["price"]
    run = services.feed_submit_json(store=store, body=feed_body(items), enqueue=False)
    services.ingestion_run_process(run_id=run.pk)
    api_client.force_authenticate(merchant_user.user)

    # Pinned: store lookup (scoped by the membership, cached on the user), count, page: no N+1.
    with django_assert_num_queries(3):
        page = api_client.get(f"{BASE}/stores/{store.pk}/items/?page_size=10").json()
    assert page["count"] == 29 and [row["sku"] for row in page["results"]] == [*skus[:2], *skus[3:11]]
    unavailable = api_client.get(f"{BASE}/stores/{store.pk}/items/?display_status=unavailable").json()
    assert [row["sku"] for row in unavailable["results"]] == [skus[1]]
    assert api_client.get(f"{BASE}/stores/{store.pk}/items/?display_status=nope").status_code == 400

    status = api_client.get(f"{BASE}/stores/{store.pk}/items/{skus[1]}/").json()
    assert status["shown"] is False and status["reason"] == "not shown: merchant reports unavailable"
    status = api_client.get(f"{BASE}/stores/{store.pk}/items/{skus[2]}/").json()
    assert (
        status["display_status"] == "rejected"
        and status["reason"] == f"rejected: missing price (run {run.pk})"
    )
    status = api_client.get(f"{BASE}/stores/{store.pk}/items/NEVER-FED/").json()
    assert status["display_status"] == "unknown"
    with django_assert_num_queries(3):
        runs = api_client.get(f"{BASE}/stores/{store.pk}/runs/").json()
    assert runs["results"][0]["rejected_by_reason"] == {"missing price": 1}


def shopper_app_user():
    from django.contrib.auth.models import Permission

    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(codename="add_shoppersignal"))
    return user


def test_shopper_signals_are_recorded_and_force_a_rescore(api_client, merchant_user, store):
    skus = catalog_create(store.merchant, 1)
    run = services.feed_submit_json(store=store, body=feed_body(feed_items(skus)), enqueue=False)
    services.ingestion_run_process(run_id=run.pk)
    api_client.force_authenticate(shopper_app_user())
    response = api_client.post(
        f"{BASE}/signals/", {"store_id": store.pk, "sku": skus[0], "found": False}, format="json"
    )
    assert response.status_code == 201
    signal = ShopperSignal.objects.get()
    assert (signal.found, signal.merchant_available, signal.hours_since_in_stock) == (False, True, 0.0)
    item = InventoryItem.objects.get(store=store, sku=skus[0])
    assert item.fingerprint is None and item.attributes["last_signal"]["found"] is False

    response = api_client.post(f"{BASE}/signals/", {"store_id": store.pk, "sku": skus[0]}, format="json")
    assert response.status_code == 400 and "found" in response.json()
    response = api_client.post(
        f"{BASE}/signals/", {"store_id": 999999, "sku": "X", "found": True}, format="json"
    )
    assert response.status_code == 404
    assert ShopperSignal.objects.count() == 1


def test_signals_are_scoped_merchants_to_their_own_stores_others_need_the_permission(
    api_client, merchant_user, store
):
    other = StoreFactory()
    url = f"{BASE}/signals/"
    api_client.force_authenticate(merchant_user.user)
    assert (
        api_client.post(url, {"store_id": store.pk, "sku": "A", "found": True}, format="json").status_code
        == 201
    )
    # Another merchant's store: not found (never disclosed), and nothing recorded against it.
    response = api_client.post(url, {"store_id": other.pk, "sku": "A", "found": False}, format="json")
    assert response.status_code == 404
    api_client.force_authenticate(UserFactory())  # signed in, but not the shopper app
    response = api_client.post(url, {"store_id": other.pk, "sku": "A", "found": False}, format="json")
    assert response.status_code == 403
    api_client.force_authenticate(shopper_app_user())
    assert (
        api_client.post(url, {"store_id": other.pk, "sku": "A", "found": False}, format="json").status_code
        == 201
    )
    assert sorted(ShopperSignal.objects.values_list("store_id", "found")) == sorted(
        [(store.pk, True), (other.pk, False)]
    )


def test_item_status_of_a_sku_with_a_slash(api_client, merchant_user, store):
    from apps.inventory.models import CatalogItem

    CatalogItem.objects.create(merchant=store.merchant, sku="AB/12 3", name="x", category="grocery")
    run = services.feed_submit_json(
        store=store, body=feed_body([{"sku": "AB/12 3", "price": 1}]), enqueue=False
    )
    services.ingestion_run_process(run_id=run.pk)
    api_client.force_authenticate(merchant_user.user)
    status = api_client.get(f"{BASE}/stores/{store.pk}/items/AB/12%203/").json()
    assert (status["sku"], status["display_status"], status["price_cents"]) == ("AB/12 3", "shown", 100)


def test_signal_sku_must_be_printable(api_client, merchant_user, store):
    api_client.force_authenticate(merchant_user.user)
    response = api_client.post(
        f"{BASE}/signals/", {"store_id": store.pk, "sku": "A\tB", "found": True}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["sku"] == ["Enter a SKU of printable characters."]
    assert not ShopperSignal.objects.exists()
