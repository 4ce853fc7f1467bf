"""The held-price review: ops approve or reject prices a guardrail held, as one set operation.

What an item shows after the decision is the pipeline's rule (pipeline.held_release), the same
one a feed applies; here the held rows are locked and read in one query and written back in one.
"""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone

from apps.inventory import pipeline

# Locked in key order, so that two reviews of overlapping items cannot deadlock.
_HELD_LOCK_SQL = """
SELECT i.store_id, i.sku, i.price_cents, i.held_price_cents, i.is_available, i.oos_score
FROM inventory_inventoryitem i
JOIN unnest(%(stores)s::bigint[], %(skus)s::text[]) AS k(store_id, sku)
  ON i.store_id = k.store_id AND i.sku = k.sku
WHERE i.display_status = 'held'
ORDER BY i.store_id, i.sku
FOR UPDATE OF i
"""

_RELEASE_SQL = """
UPDATE inventory_inventoryitem i SET
    price_cents = d.price_cents, held_price_cents = NULL, display_status = d.display_status,
    status_reason = d.status_reason,
    attributes = i.attributes || jsonb_build_object('review', jsonb_build_object('decision', %(decision)s,
        'by', %(user)s, 'held_price_cents', i.held_price_cents, 'at', %(now)s::text)),
    -- The next feed re-evaluates the item (a rejected price that is fed again is held again).
    fingerprint = NULL, updated_at = %(now)s
FROM unnest(%(stores)s::bigint[], %(skus)s::text[], %(prices)s::integer[], %(statuses)s::text[],
            %(reasons)s::text[]) AS d(store_id, sku, price_cents, display_status, status_reason)
WHERE i.store_id = d.store_id AND i.sku = d.sku AND i.display_status = 'held'
"""


def _held_release(*, keys: list[tuple[int, str]], approve: bool, user) -> int:
    keys = list(dict.fromkeys(keys))  # a key listed twice is still one item
    if not keys:
        return 0
    user = str(user)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_HELD_LOCK_SQL, {"stores": [k[0] for k in keys], "skus": [k[1] for k in keys]})
        held = cursor.fetchall()
        if not held:
            return 0
        decided = [
            pipeline.held_release(
                approve=approve,
                price_cents=price,
                held_price_cents=held_price,
                available=available,
                score=score,
                user=user,
            )
            for _store, _sku, price, held_price, available, score in held
        ]
        cursor.execute(
            _RELEASE_SQL,
            {
                "decision": "approved" if approve else "rejected",
                "user": user,
                "now": timezone.now(),
                "stores": [row[0] for row in held],
                "skus": [row[1] for row in held],
                "prices": [price for price, _status, _reason in decided],
                "statuses": [status for _price, status, _reason in decided],
                "reasons": [reason for _price, _status, reason in decided],
            },
        )
        return cursor.rowcount


def held_items_approve(*, keys: list[tuple[int, str]], user) -> int:
    """Publish the held prices of these (store_id, sku) items; returns how many were held."""
    return _held_release(keys=keys, approve=True, user=user)


def held_items_reject(*, keys: list[tuple[int, str]], user) -> int:
    """Drop the held prices: the previously published price stays (or the item stays hidden)."""
    return _held_release(keys=keys, approve=False, user=user)
