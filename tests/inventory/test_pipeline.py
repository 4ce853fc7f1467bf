"""The pure per-item pipeline (no database): validation, pricing, guardrails, prediction, digests."""

from __future__ import annotations

import numpy as np

from apps.inventory import pipeline
from apps.inventory.pipeline import CatalogEntry, StoreContext


def context(**overrides) -> StoreContext:
    catalog = {
        "APPLE": CatalogEntry("APPLE", "produce", 0.2),
        "SOAP": CatalogEntry("SOAP", "household", None, published_cents=300),
        "WINE": CatalogEntry("WINE", "alcohol", None),
    }
    values = dict(
        store_id=1,
        run_id=7,
        markup_bps=0,
        default_ratio=10.0,
        catalog=catalog,
        now_epoch=1e9,
        guardrails={"alcohol": (None, 5000), "household": (2.0, None)},
    )
    values.update(overrides)
    return StoreContext(**values)


def test_csv_strings_are_accepted_and_weighted_items_priced_per_weight():
    out = pipeline.process_batch(
        [{"sku": "APPLE", "unit_price": "3.00", "available": "yes", "quantity": "4", "aisle": 'A\t"1"'}],
        context(markup_bps=1000),
    )
    (row,) = out.rows
    sku, price, available, status, reason, held, score, attrs, fp, rejected = row
    assert (sku, price, available, status, held, rejected) == (
        "APPLE",
        66,
        True,
        "shown",
        None,
        None,
    )  # 3.00 x 0.2 +10 %
    assert attrs == '{"unit_price_cents":300,"average_weight":0.2,"quantity":4,"aisle":"A\\t\\"1\\""}'
    assert fp == pipeline.fingerprint(66, True, "shown", "", None, score, attrs)


def test_each_bad_item_gets_its_own_reason():
    items = [
        {"sku": "SOAP", "price": 3, "quantity": -1},
        {"sku": "SOAP", "price": 3},
        {"price": 1},
        7,
        {"sku": "X" * 65, "price": 1},
        {"sku": "WINE", "price": float("nan")},
        {"sku": "WINE", "price": True},
        {"sku": "APPLE", "unit_price": 1, "available": "perhaps"},
    ]
    out = pipeline.process_batch(items, context())
    # The first occurrence of a SKU decides; later ones are duplicates even if the first was bad.
    assert out.received == 8 and out.valid_written == 0 and out.rejected == 8
    assert out.rejected_by_reason == {
        "invalid quantity": 1,
        "duplicate sku in feed": 2,
        "missing sku": 1,
        "malformed item (not an object)": 1,
        "invalid sku (longer than 64 characters)": 1,
        "invalid price": 1,
        "invalid availability": 1,
    }


def test_guardrails_use_category_ratio_and_ceiling():
    out = pipeline.process_batch([{"sku": "SOAP", "price": 6.01}, {"sku": "WINE", "price": 50.01}], context())
    reasons = {row[0]: (row[1], row[3], row[4], row[5]) for row in out.rows}
    assert reasons["SOAP"] == (
        300,
        "held",
        "not shown: held by price guardrail at run 7: price change 3.00 -> 6.01 beyond 2x",
        601,
    )
    assert reasons["WINE"] == (
        None,
        "held",
        "not shown: held by price guardrail at run 7: price 50.01 above the alcohol ceiling 50.00",
        5001,
    )
    assert out.held == 2


def test_unchanged_items_are_not_written_and_the_model_scores_the_batch_at_once():
    calls = []

    def model(features):
        calls.append(features.shape)
        return np.where(features[:, 0] > 0, 0.2, 0.8)

    ctx = context(predictor=model)
    first = pipeline.process_batch(
        [{"sku": "SOAP", "price": 3}, {"sku": "WINE", "price": 9, "available": False}], ctx
    )
    assert calls == [(2, 4)]
    for row in first.rows:
        ctx.catalog[row[0]] = ctx.catalog[row[0]]._replace(fingerprint=row[8])
    ctx.seen.clear()
    again = pipeline.process_batch(
        [{"sku": "SOAP", "price": 3}, {"sku": "WINE", "price": 9, "available": False}], ctx
    )
    assert again.rows == [] and again.unchanged == 2 and again.predicted_oos == 1


def test_heuristic_without_a_model():
    scores = pipeline.heuristic_scores(np.array([[1, 0, 0, 0], [1, 0, 0, 3], [0, 720, 5, 0]], dtype=float))
    assert scores.round(2).tolist() == [0.0, 0.6, 0.9]


def test_values_the_database_cannot_hold_are_rejected_per_item_not_raised():
    ctx = context()
    for sku in ("P1", "P2", "P3", "P4", "P5", "P6", "P7", "OK1", "OK2"):
        ctx.catalog[sku] = CatalogEntry(sku, "grocery", None)
    items = [
        {"sku": "A\x00B", "price": 1},
        {"sku": "A\ud800", "price": 1},
        {"sku": "X" * 70 + "\x00", "price": 1},
        {"sku": "P1", "price": 10**400},  # an integer literal too big for a float
        {"sku": "P2", "price": 1, "quantity": float("inf")},  # JSON 1e400
        {"sku": "P3", "price": 1, "quantity": 2.5},
        {"sku": "P4", "price": 1, "quantity": 2**31},
        {"sku": "P5", "price": 1, "quantity": True},
        {"sku": "P6", "price": 1, "aisle": "4\x00"},
        {"sku": "P7", "price": 1, "aisle": {"row": 4}},
        {"sku": "OK1", "price": 1, "quantity": 5.0, "aisle": 12},
        {"sku": "OK2", "price": 1, "quantity": "7", "aisle": "A\tB"},
    ]
    out = pipeline.process_batch(items, ctx)
    assert out.rejected_by_reason == {
        "invalid sku (unprintable characters)": 2,
        "invalid sku (longer than 64 characters)": 1,
        "invalid price": 1,
        "invalid quantity": 4,
        "invalid aisle": 2,
    }
    logged = [row[0] for row in out.rows if row[9] is not None]
    assert logged[:2] == ["A\\x00B", "A\\ud800"] and len(logged[2]) == 64
    for sku in logged:  # every logged SKU can be COPYed into text: no NUL, valid UTF-8
        assert "\x00" not in sku and sku.encode()
    written = {row[0]: row[7] for row in out.rows if row[9] is None}
    assert written == {"OK1": '{"quantity":5,"aisle":"12"}', "OK2": '{"quantity":7,"aisle":"A\\tB"}'}
    assert not pipeline.valid_sku("A\x00B") and pipeline.valid_sku("OK1")
