"""Idempotency-Key on creating endpoints: a retry replays the first answer, never creates twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connections
from rest_framework.test import APIClient

from apps.core import idempotency
from apps.core.models import IdempotencyKey
from apps.inventory.models import IngestionRun, ShopperSignal
from tests.factories.accounts import MerchantUserFactory
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items
from tests.utils.concurrency import run_at_once

BASE = "/api/v1/inventory"


@pytest.fixture
def member():
    return MerchantUserFactory()


@pytest.fixture
def store(member):
    return StoreFactory(merchant=member.merchant)


@pytest.fixture
def client(member):
    client = APIClient()
    client.force_authenticate(member.user)
    return client


def post_feed(client, store, body: bytes, key: str | None = None):
    headers = {} if key is None else {"Idempotency-Key": key}
    return client.post(
        f"{BASE}/stores/{store.pk}/feeds/", data=body, content_type="application/json", headers=headers
    )


@pytest.mark.django_db
def test_a_retried_feed_with_the_same_key_creates_one_run_and_replays_the_first_answer(client, store):
    body = feed_body(feed_items(catalog_create(store.merchant, 3)))
    first = post_feed(client, store, body, key="feed-2024-05-01")
    again = post_feed(client, store, body, key="feed-2024-05-01")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and first.json()["run_id"] == IngestionRun.objects.get().pk
    assert again["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first
    stored = IdempotencyKey.objects.get()
    assert (stored.method, stored.path) == ("POST", f"{BASE}/stores/{store.pk}/feeds/")
    assert (stored.response_status, stored.response_body) == (202, first.json())


@pytest.mark.django_db
def test_without_a_key_every_post_creates(client, store):
    body = feed_body(feed_items(catalog_create(store.merchant, 1)))
    assert post_feed(client, store, body).status_code == post_feed(client, store, body).status_code == 202
    assert IngestionRun.objects.count() == 2 and not IdempotencyKey.objects.exists()


@pytest.mark.django_db
def test_the_same_key_with_another_body_or_endpoint_is_refused(client, store, member):
    skus = catalog_create(store.merchant, 2)
    assert post_feed(client, store, feed_body(feed_items(skus[:1])), key="k1").status_code == 202

    other_body = post_feed(client, store, feed_body(feed_items(skus)), key="k1")
    assert other_body.status_code == 422
    assert other_body.json()["code"] == "idempotency_key_reused"
    assert other_body.json()["errors"]["Idempotency-Key"] == [
        "This Idempotency-Key was used with a different request body."
    ]

    other_store = StoreFactory(merchant=member.merchant)
    other_path = post_feed(client, other_store, feed_body(feed_items(skus[:1])), key="k1")
    assert other_path.status_code == 422
    assert f"POST {BASE}/stores/{store.pk}/feeds/" in other_path.json()["detail"]
    assert IngestionRun.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "tab\there"])
def test_an_invalid_key_is_a_field_level_400_and_creates_nothing(client, store, key):
    body = feed_body(feed_items(catalog_create(store.merchant, 1)))
    response = client.generic(
        "POST", f"{BASE}/stores/{store.pk}/feeds/", body, content_type="application/json",
        # Raw WSGI header as a server hands it over (latin-1), so any byte can be sent.
        HTTP_IDEMPOTENCY_KEY=key,
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"Idempotency-Key": ["Must be 1 to 255 printable ASCII characters."]}
    assert not IngestionRun.objects.exists()


@pytest.mark.django_db
def test_the_longest_key_is_taken(client, store):
    body = feed_body(feed_items(catalog_create(store.merchant, 1)))
    assert post_feed(client, store, body, key="~" * 255).status_code == 202
    assert post_feed(client, store, body, key="~" * 255)["Idempotent-Replayed"] == "true"


@pytest.mark.django_db
def test_a_refused_request_does_not_keep_its_key(client, store):
    refused = post_feed(client, store, b'{"rows": []}', key="k2")
    assert refused.status_code == 400 and not IdempotencyKey.objects.exists()
    body = feed_body(feed_items(catalog_create(store.merchant, 1)))
    corrected = post_feed(client, store, body, key="k2")
    assert corrected.status_code == 202 and "Idempotent-Replayed" not in corrected
    assert IngestionRun.objects.count() == 1


@pytest.mark.django_db
def test_keys_belong_to_their_user(client, store, member):
    colleague = MerchantUserFactory(merchant=member.merchant)
    other = APIClient()
    other.force_authenticate(colleague.user)
    body = feed_body(feed_items(catalog_create(store.merchant, 1)))
    assert post_feed(client, store, body, key="shared").status_code == 202
    assert "Idempotent-Replayed" not in post_feed(other, store, body, key="shared")
    assert IngestionRun.objects.count() == 2


@pytest.mark.django_db
def test_a_csv_upload_retried_with_a_new_multipart_boundary_is_replayed(client, store):
    skus = catalog_create(store.merchant, 2)
    content = f"sku,price,available\n{skus[0]},1,1\n{skus[1]},2,0\n".encode()
    answers = [
        client.post(
            f"{BASE}/stores/{store.pk}/feeds/csv/",
            {"file": SimpleUploadedFile("f.csv", content, "text/csv")},
            format="multipart",
            headers={"Idempotency-Key": "csv-1"},
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [202, 202] and answers[1]["Idempotent-Replayed"] == "true"
    assert IngestionRun.objects.count() == 1

    changed = client.post(
        f"{BASE}/stores/{store.pk}/feeds/csv/",
        {"file": SimpleUploadedFile("f.csv", content + b"X,1,1\n", "text/csv")},
        format="multipart",
        headers={"Idempotency-Key": "csv-1"},
    )
    assert changed.status_code == 422


@pytest.mark.django_db
def test_a_retried_shopper_signal_is_recorded_once(client, store):
    sku = catalog_create(store.merchant, 1)[0]
    answers = [
        client.post(
            f"{BASE}/signals/", {"store_id": store.pk, "sku": sku, "found": False}, format="json",
            headers={"Idempotency-Key": "signal-1"},
        )
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [201, 201] and answers[0].json() == answers[1].json()
    assert ShopperSignal.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_create_one_run_and_all_get_its_answer(store, member):
    body = feed_body(feed_items(catalog_create(store.merchant, 20)))

    def submit():
        client = APIClient()
        client.force_authenticate(member.user)
        response = post_feed(client, store, body, key="racing")
        return response.status_code, response.json()["run_id"], response.get("Idempotent-Replayed")

    answers = run_at_once(submit, 6)
    run = IngestionRun.objects.get()
    assert sorted(answers, key=lambda a: a[2] or "") == [(202, run.pk, None)] + [(202, run.pk, "true")] * 5


@pytest.mark.django_db(transaction=True)
def test_a_retry_while_the_first_request_is_still_open_gets_409(store, member, monkeypatch):
    monkeypatch.setattr(idempotency, "IN_FLIGHT_WAIT_S", 0.2)
    body = feed_body(feed_items(catalog_create(store.merchant, 1)))
    # Another session holds the key in an open transaction, as a request still being processed does.
    holder = connections.create_connection("default")
    try:
        with holder.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute(
                "INSERT INTO core_idempotencykey (user_id, key, method, path, fingerprint) "
                "VALUES (%s, 'open', 'POST', '/', '')",
                [member.user.pk],
            )
            client = APIClient()
            client.force_authenticate(member.user)
            response = post_feed(client, store, body, key="open")
            cursor.execute("ROLLBACK")
    finally:
        holder.close()
    assert response.status_code == 409 and response.json()["code"] == "conflict"
    assert "Idempotency-Key" in response.json()["errors"]
    assert not IngestionRun.objects.exists()
    # The holder gave up: the key is free again.
    assert post_feed(client, store, body, key="open").status_code == 202


@pytest.mark.django_db
def test_keys_past_their_ttl_are_purged_by_the_hourly_purge_job(client, store, settings):
    from django_celery_beat.models import PeriodicTask

    from apps.core.tasks import idempotency_keys_purge_expired

    schedule = PeriodicTask.objects.get(task="apps.core.tasks.idempotency_keys_purge_expired")
    assert schedule.enabled and schedule.interval.every == 3600

    settings.IDEMPOTENCY_KEY_TTL_HOURS = 24
    body = feed_body(feed_items(catalog_create(store.merchant, 1)))
    for key in ("old", "new"):
        post_feed(client, store, body, key=key)
    IdempotencyKey.objects.filter(key="old").update(created_at=IdempotencyKey.objects.get(key="old").created_at
                                                    - timedelta(hours=24, seconds=1))
    assert idempotency_keys_purge_expired.run() == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    # A purged key is a new key: the same request creates again.
    assert "Idempotent-Replayed" not in post_feed(client, store, body, key="old")


@pytest.mark.django_db
def test_the_api_schema_documents_the_header_on_the_creating_endpoints(client):
    from tests.factories.accounts import UserFactory

    client.force_authenticate(UserFactory(is_staff=True))
    paths = client.get("/api/schema/?format=json").json()["paths"]
    for path in ("/stores/{store_id}/feeds/", "/stores/{store_id}/feeds/csv/", "/signals/"):
        parameters = paths[f"{BASE}{path}"]["post"].get("parameters", [])
        assert {"in": "header", "name": "Idempotency-Key"}.items() <= next(
            (p for p in parameters if p["name"] == "Idempotency-Key"), {}
        ).items(), path
