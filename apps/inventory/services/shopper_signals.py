"""Shopper signals: a shopper found (or did not find) an item at the shelf. Each becomes training
history for the out-of-stock model and a feature of the item's next prediction."""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from apps.inventory import pipeline
from apps.inventory.models import InventoryItem, ShopperSignal, Store


def shopper_signal_record(*, store: Store, sku: str, found: bool) -> ShopperSignal:
    """Record a found / not-found report; it becomes training history and a prediction feature."""
    now = timezone.now()
    with transaction.atomic():
        item = (
            InventoryItem.objects.select_for_update()
            .filter(store=store, sku=sku)
            .only("is_available", "last_in_stock_at")
            .first()
        )
        if item is None:
            available, hours = None, None
        else:
            # The features as prediction sees them at this moment, so training learns from those.
            available = item.is_available
            last_in_stock = None if item.last_in_stock_at is None else item.last_in_stock_at.timestamp()
            hours = pipeline.hours_since_in_stock(available, last_in_stock, now.timestamp())
        signal = ShopperSignal.objects.create(
            store=store,
            sku=sku,
            found=found,
            merchant_available=available,
            hours_since_in_stock=hours,
            created_at=now,
        )
        if item is not None:
            # A fresh signal changes the prediction's inputs: the next feed must re-score the item.
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE inventory_inventoryitem SET fingerprint = NULL, attributes = attributes || "
                    "jsonb_build_object('last_signal', jsonb_build_object('found', %s, 'at', %s::text)) "
                    "WHERE store_id = %s AND sku = %s",
                    [found, now, store.pk, sku],
                )
    return signal
