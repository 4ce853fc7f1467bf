"""Factories and feed builders of the inventory tests."""

from __future__ import annotations

import json

import factory

from apps.inventory.models import CatalogItem, Store, Unit
from tests.factories.accounts import MerchantFactory


class StoreFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Store

    merchant = factory.SubFactory(MerchantFactory)
    external_id = factory.Sequence(lambda n: f"store-{n}")
    name = factory.Sequence(lambda n: f"Store {n}")


class CatalogItemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CatalogItem

    merchant = factory.SubFactory(MerchantFactory)
    sku = factory.Sequence(lambda n: f"SKU-{n:06d}")
    name = factory.Sequence(lambda n: f"Item {n}")
    category = "grocery"
    unit = Unit.EACH


def catalog_create(merchant, count: int, *, category: str = "grocery", prefix: str = "SKU-") -> list[str]:
    """`count` piece-priced catalog items for a merchant; returns their SKUs."""
    skus = [f"{prefix}{n:06d}" for n in range(count)]
    CatalogItem.objects.bulk_create(
        [CatalogItem(merchant=merchant, sku=sku, name=f"Item {sku}", category=category) for sku in skus]
    )
    return skus


def feed_items(skus, *, price: float = 1.99, available: bool = True, quantity: int | None = 5) -> list[dict]:
    items = []
    for n, sku in enumerate(skus):
        item = {"sku": sku, "price": round(price + n % 7 * 0.1, 2), "available": available}
        if quantity is not None:
            item["quantity"] = quantity
        items.append(item)
    return items


def feed_body(items) -> bytes:
    return json.dumps({"items": items}).encode()
