"""Read queries of the inventory app: scoping by merchant, items, runs, and "why is it not shown?"."""

from __future__ import annotations

from django.db.models import QuerySet

from apps.core.errors import NotFound
from apps.inventory.models import DisplayStatus, IngestionRun, InventoryItem, ItemRejection, Store
from apps.merchants.selectors import merchant_for_user


def stores_for_user(user) -> QuerySet[Store]:
    """A merchant user sees their merchant's stores; staff with view permission see all."""
    merchant = merchant_for_user(user)
    if merchant is not None:
        return Store.objects.filter(merchant=merchant)
    if user.has_perm("inventory.view_store"):
        return Store.objects.all()
    return Store.objects.none()


def _store_or_not_found(stores: QuerySet[Store], store_id: int) -> Store:
    store = stores.filter(pk=store_id).first()
    if store is None:
        raise NotFound("No such store.")
    return store


def store_get(*, store_id: int) -> Store:
    return _store_or_not_found(Store.objects.all(), store_id)


def store_for_user(*, user, store_id: int) -> Store:
    # Another merchant's store answers 404, never 403: its existence is not disclosed.
    return _store_or_not_found(stores_for_user(user), store_id)


def store_items(*, store: Store, display_status: str | None = None) -> QuerySet[InventoryItem]:
    items = InventoryItem.objects.filter(store=store).order_by("sku")  # the primary key order
    if display_status:
        items = items.filter(display_status=display_status)
    return items


def store_runs(*, store: Store) -> QuerySet[IngestionRun]:
    return IngestionRun.objects.filter(store=store).order_by("-id")


def held_items() -> QuerySet[InventoryItem]:
    """The ops review queue (served by the partial index on held items)."""
    return (
        InventoryItem.objects.filter(display_status=DisplayStatus.HELD)
        .select_related("store", "store__merchant")
        .order_by("store_id", "sku")
    )


def item_status(*, store: Store, sku: str) -> dict:
    """Why is this SKU shown or not in this store? Two indexed lookups, any store and SKU."""
    item = InventoryItem.objects.filter(store=store, sku=sku).first()
    rejection = (
        ItemRejection.objects.filter(store=store, sku=sku)
        .order_by("-created_at")
        .values("run_id", "reason", "created_at")
        .first()
    )
    answer: dict = {"store_id": store.pk, "sku": sku, "last_rejection": rejection}
    if item is None:
        if rejection is None:
            answer.update(
                display_status="unknown",
                reason="not shown: no feed of this store listed this SKU",
                shown=False,
            )
        else:
            answer.update(
                display_status=DisplayStatus.REJECTED,
                reason=f"rejected: {rejection['reason']} (run {rejection['run_id']})",
                shown=False,
            )
        return answer
    reason = item.status_reason
    if rejection is not None and rejection["created_at"] >= item.updated_at:
        # The latest feed rejected the item: the last accepted values stay in place.
        reason = (
            f"rejected: {rejection['reason']} (run {rejection['run_id']}); "
            f"still {item.get_display_status_display()}" + (f" — {reason}" if reason else "")
        )
    answer.update(
        display_status=item.display_status,
        reason=reason or "shown",
        shown=item.display_status == DisplayStatus.SHOWN,
        price_cents=item.price_cents,
        held_price_cents=item.held_price_cents,
        is_available=item.is_available,
        oos_score=item.oos_score,
        attributes=item.attributes,
        updated_run_id=item.updated_run_id,
        updated_at=item.updated_at,
    )
    return answer


def runs_for_user(user) -> QuerySet[IngestionRun]:
    return IngestionRun.objects.filter(store__in=stores_for_user(user))
