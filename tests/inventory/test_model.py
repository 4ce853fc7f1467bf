"""Out-of-stock model: trained from shopper-signal history, versioned, used by the pipeline."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.errors import ApplicationError
from apps.inventory import services, tasks
from apps.inventory.models import InventoryItem, OosModel, ShopperSignal
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items

pytestmark = pytest.mark.django_db


def history(store, skus, *, n: int = 300) -> None:
    """Signals where items the merchant reports unavailable are mostly not found, others mostly found."""
    rng = random.Random(1)
    start = timezone.now() - timedelta(days=3)
    rows = []
    for i in range(n):
        sku = skus[i % len(skus)]
        available = i % 3 != 0
        found = rng.random() < (0.9 if available else 0.1)
        rows.append(
            ShopperSignal(
                store=store,
                sku=sku,
                found=found,
                merchant_available=available,
                hours_since_in_stock=0.0 if available else 48.0,
                created_at=start + timedelta(minutes=i),
            )
        )
    ShopperSignal.objects.bulk_create(rows)


def test_training_needs_enough_history():
    with pytest.raises(ApplicationError, match="Not enough history"):
        services.oos_model_train()
    assert tasks.oos_model_train() is None  # the beat task tolerates it
    assert not OosModel.objects.exists()


def test_trained_model_is_versioned_with_held_out_accuracy_and_used_by_the_pipeline():
    store = StoreFactory()
    skus = catalog_create(store.merchant, 20)
    history(store, skus)
    first = services.oos_model_train()
    assert (first.version, first.is_current, first.algorithm) == (1, True, "LogisticRegression")
    assert first.test_samples == 75 and first.train_samples == 225
    assert first.accuracy > 0.75  # the signal is learnable; the heuristic-free baseline is ~0.6
    assert first.features == [
        "merchant_available",
        "hours_since_in_stock",
        "signals_found",
        "signals_not_found",
    ]

    second = services.oos_model_train()
    first.refresh_from_db()
    assert second.version == 2 and second.is_current and not first.is_current

    items = feed_items(skus)
    items[0]["available"] = False
    run = services.feed_submit_json(store=store, body=feed_body(items), enqueue=False)
    services.ingestion_run_process(run_id=run.pk)
    run.refresh_from_db()
    assert run.prediction == "model-v2"
    scores = dict(InventoryItem.objects.filter(store=store).values_list("sku", "oos_score"))
    assert all(score is not None for score in scores.values())
    # An item the merchant reports unavailable scores as much more likely out of stock.
    assert scores[skus[0]] > 0.5 > scores[skus[1]]
    assert run.predicted_oos >= 1
