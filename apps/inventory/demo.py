"""Demo inventory: a store per demo merchant with ~1,000 items ingested through the real pipeline,
a couple of prices held for review, and shopper-signal history with a trained model."""

from __future__ import annotations

import json
import random
from datetime import timedelta

from django.utils import timezone

from apps.core.progress import Progress
from apps.inventory import services
from apps.inventory.models import (
    CatalogItem,
    IngestionRun,
    InventoryItem,
    OosModel,
    PriceGuardrail,
    ShopperSignal,
    Store,
    Unit,
)
from apps.merchants.models import Merchant

MERCHANTS = ("m-1001", "m-1002", "m-1003", "m-1004", "m-1005")
CATEGORIES = ("produce", "dairy", "bakery", "snacks", "drinks", "household", "alcohol")
ITEMS = 1000


def _catalog(merchant: Merchant) -> list[str]:
    skus = [f"{merchant.external_id.upper()}-{n:05d}" for n in range(ITEMS)]
    CatalogItem.objects.bulk_create(
        [
            CatalogItem(
                merchant=merchant,
                sku=sku,
                name=f"{CATEGORIES[n % 7].title()} item {n}",
                brand="Demo",
                category=CATEGORIES[n % 7],
                unit=Unit.KG if n % 7 == 0 else Unit.EACH,
                average_weight=0.4 + n % 5 / 10 if n % 7 == 0 else None,
            )
            for n, sku in enumerate(skus)
        ],
        ignore_conflicts=True,
    )
    return skus


def _feed(skus: list[str], rng: random.Random) -> list[dict]:
    items = []
    for n, sku in enumerate(skus):
        item = {
            "sku": sku,
            "available": n % 40 != 0,
            "quantity": rng.randint(0, 30),
            "aisle": f"{n % 12 + 1}",
        }
        item["unit_price" if n % 7 == 0 else "price"] = round(rng.uniform(0.5, 15), 2)
        items.append(item)
    del items[5]["available"], items[5]["price"]  # one malformed item, rejected with its reason
    return items


def _ingest(store: Store, items: list[dict]) -> None:
    run = services.feed_submit_json(store=store, body=json.dumps({"items": items}).encode(), enqueue=False)
    services.ingestion_run_process(run_id=run.pk)


def seed(*, progress: Progress) -> dict[str, int]:
    for category, ceiling in (("alcohol", 30_000), ("household", 20_000)):
        PriceGuardrail.objects.get_or_create(
            store=None, category=category, defaults={"ceiling_cents": ceiling}
        )
    rng = random.Random(42)
    merchants = list(Merchant.objects.filter(external_id__in=MERCHANTS).order_by("external_id"))
    for n, merchant in enumerate(progress.iter(merchants, desc="inventory")):
        skus = _catalog(merchant)
        store, _ = Store.objects.get_or_create(
            merchant=merchant,
            external_id=f"{merchant.external_id}-main",
            defaults={"name": f"{merchant.name} — Main St", "price_markup_bps": 100 * n},
        )
        if not IngestionRun.objects.filter(store=store).exists():
            items = _feed(skus, rng)
            _ingest(store, items)
            if n == 0:
                # A later feed with two prices 20x up: held for the review queue.
                _ingest(
                    store,
                    [
                        dict(items[1], price=items[1]["price"] * 20),
                        dict(items[2], price=items[2]["price"] * 20),
                    ],
                )
                _signals(store, skus, rng)
    if not OosModel.objects.exists() and ShopperSignal.objects.count() >= 40:
        services.oos_model_train()
    return {
        "stores": Store.objects.count(),
        "catalog_items": CatalogItem.objects.count(),
        "inventory_items": InventoryItem.objects.count(),
        "held_items": InventoryItem.objects.filter(display_status="held").count(),
        "runs": IngestionRun.objects.count(),
        "shopper_signals": ShopperSignal.objects.count(),
        "oos_models": OosModel.objects.count(),
    }


def _signals(store: Store, skus: list[str], rng: random.Random) -> None:
    start = timezone.now() - timedelta(days=2)
    unavailable = set(
        InventoryItem.objects.filter(store=store, is_available=False).values_list("sku", flat=True)
    )
    rows = []
    for i in range(400):
        sku = skus[rng.randrange(len(skus)) if i % 4 else rng.randrange(0, len(skus), 40)]
        available = sku not in unavailable
        rows.append(
            ShopperSignal(
                store=store,
                sku=sku,
                found=rng.random() < (0.9 if available else 0.15),
                merchant_available=available,
                hours_since_in_stock=0.0 if available else 24.0,
                created_at=start + timedelta(minutes=5 * i),
            )
        )
    ShopperSignal.objects.bulk_create(rows)
