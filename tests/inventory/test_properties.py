"""No feed item, however malformed, fails a run: each is written or rejected alone with a reason,
and the counts add up. One worked example through the API, then generated feeds (hypothesis)
run by the same service the worker calls, on the real database."""

from __future__ import annotations

import json

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.inventory import services
from apps.inventory.models import CatalogItem, IngestionRun, InventoryItem, ItemRejection, Unit
from tests.factories.accounts import MerchantUserFactory
from tests.factories.inventory import StoreFactory, catalog_create

pytestmark = pytest.mark.django_db


def test_bad_items_are_rejected_alone_and_the_rest_of_the_feed_applies(api_client):
    merchant_user = MerchantUserFactory()
    store = StoreFactory(merchant=merchant_user.merchant)
    skus = catalog_create(store.merchant, 8)
    good = [{"sku": sku, "price": 2.5, "available": True} for sku in skus[:2]]
    junk = {"a": [[[{"b": [1, None, True, "x"]}]]], "n": -1.5}
    # Written by hand: the text json.dumps cannot produce (a lone surrogate escape, 1e400).
    bad_items = [
        '{"sku": "SKU-\\u0000", "price": 1}',
        '{"sku": "SKU-\\ud800", "price": 1}',
        f'{{"sku": "{skus[2]}", "price": 1e400}}',
        f'{{"sku": "{skus[3]}", "price": 1, "quantity": {2**70}}}',
        f'{{"sku": "{skus[4]}", "price": 1e300}}',  # no integer cents column holds it
        f'{{"sku": "{skus[5]}", "price": 3, "attributes": {json.dumps(junk)}}}',  # unread junk: applied
    ]
    body = '{"items": [' + ", ".join([*map(json.dumps, good), *bad_items]) + "]}"
    api_client.force_authenticate(merchant_user.user)
    response = api_client.post(f"/api/v1/inventory/stores/{store.pk}/feeds/", data=body.encode(),
                               content_type="application/json")
    assert response.status_code == 202, response.content
    run_id = response.json()["run_id"]
    assert response.json()["items_total"] == 8

    assert services.ingestion_run_process(run_id=run_id) == "succeeded"
    run = IngestionRun.objects.get(pk=run_id)
    assert (run.received, run.created, run.rejected) == (8, 3, 5)
    assert run.rejected_by_reason == {
        "invalid sku (unprintable characters)": 2,
        "invalid price": 1,
        "invalid quantity": 1,
        "invalid price (too high)": 1,
    }
    written = InventoryItem.objects.filter(store=store).order_by("sku")
    assert [(item.sku, item.price_cents) for item in written] == [
        (skus[0], 250), (skus[1], 250), (skus[5], 300)
    ]
    rejections = dict(ItemRejection.objects.filter(run_id=run_id).values_list("sku", "reason"))
    assert rejections == {
        "SKU-\\x00": "invalid sku (unprintable characters)",
        "SKU-\\ud800": "invalid sku (unprintable characters)",
        skus[2]: "invalid price",
        skus[3]: "invalid quantity",
        skus[4]: "invalid price (too high)",
    }


def test_a_feed_is_refused_whole_only_when_it_is_not_a_feed(api_client):
    merchant_user = MerchantUserFactory()
    store = StoreFactory(merchant=merchant_user.merchant)
    api_client.force_authenticate(merchant_user.user)
    url = f"/api/v1/inventory/stores/{store.pk}/feeds/"
    for body, field in (
        ('{"items": [], "note": NaN}', "note"),  # outside any item: nothing would reject it alone
        ('{"items": ' + "[" * 100_000 + "]" * 100_000 + "}", "non_field_errors"),
        ('{"items": [{"sku": "A", "price": 1' + "0" * 5_000 + "}]}", "non_field_errors"),
    ):
        response = api_client.post(url, data=body.encode(), content_type="application/json")
        assert response.status_code == 400, (body[:40], response.content[:200])
        assert list(response.json()["errors"]) == [field]
    assert not IngestionRun.objects.exists()


# --------------------------------------------------------------------------- generated feeds

CATALOG = [f"P-{n:06d}" for n in range(20)] + ["W-000"]  # W-000 is sold by weight
# Hypothesis leans towards the first choices: the keys read last by the pipeline come first here.
KEYS = ["aisle", "quantity", "available", "price", "unit_price", "attributes", "sku"]

# What PostgreSQL cannot store or a reader would trip on, most of it unprintable.
_bad_text = st.sampled_from(["\x00", "7\x00", "\ud800", "a\udfffb", "\t", "", " ", "x" * 65, "1e400", "NaN"])
_text = st.text(max_size=8) | _bad_text
_numbers = (
    st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -0.0, 1e300, 1e-300, 10**400, 99_999.999, 100_000.01, 2**31, 2**63])
)
_scalars = st.none() | st.booleans() | _numbers | _text | _numbers.map(str)
_junk = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
# A good item with one or two of its values damaged reaches every check of the pipeline; items
# damaged everywhere would all stop at the first one.
_good = st.fixed_dictionaries(
    {"sku": st.sampled_from(CATALOG), "price": st.floats(min_value=0, max_value=500),
     "unit_price": st.floats(min_value=0, max_value=50), "available": st.booleans()},
    optional={"quantity": st.integers(min_value=0, max_value=99), "aisle": st.text(max_size=4)},
)
_damage = st.dictionaries(st.sampled_from(KEYS), _bad_text | _scalars | _junk, min_size=1, max_size=2)
_damaged = st.builds(lambda good, damage: {**good, **damage}, _good, _damage)
_items = st.one_of(_damaged, _damaged, _damaged, _junk)


def _body(items: list) -> bytes:
    # allow_nan writes NaN/Infinity; Python ints beyond 4300 digits are not generated.
    return json.dumps({"items": items}).encode("utf-8", "surrogatepass")


@pytest.fixture
def store():
    store = StoreFactory()
    catalog_create(store.merchant, 20, prefix="P-")
    CatalogItem.objects.create(merchant=store.merchant, sku="W-000", name="Bananas", category="produce",
                               unit=Unit.KG, average_weight=0.2)
    return store


@hypothesis_settings(max_examples=40, deadline=None, database=None, derandomize=True,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(items=st.lists(_items, min_size=1, max_size=25))
def test_every_generated_item_is_written_or_rejected_with_a_reason(store, items):
    with transaction.atomic():
        try:
            run = services.feed_submit_json(store=store, body=_body(items), enqueue=False, batch_size=5)
            assert services.ingestion_run_process(run_id=run.pk) == "succeeded"
            run.refresh_from_db()
            assert run.error == "" and run.received == run.items_total == len(items)
            rejections = list(ItemRejection.objects.filter(run_id=run.pk).values_list("reason", flat=True))
            assert all(rejections) and len(rejections) == run.rejected
            assert sum(run.rejected_by_reason.values()) == run.rejected
            written = InventoryItem.objects.filter(store=store, updated_run_id=run.pk).count()
            assert written == run.created + run.updated
            assert run.created + run.updated + run.unchanged + run.rejected == len(items)
        finally:
            transaction.set_rollback(True)  # each example starts from the same catalog
