"""Indexes exactly for the queries made: the set is pinned, and each query plans onto its index."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from apps.inventory import lake as inventory_lake
from apps.inventory import selectors
from apps.inventory.models import IngestionRun, ItemRejection, RunStatus, ShopperSignal
from apps.inventory.services import engine
from tests.factories.inventory import StoreFactory

pytestmark = pytest.mark.django_db

# Secondary indexes of the inventory tables (primary keys and unique constraints aside).
EXPECTED = {
    "inventory_item_held",
    "inventory_run_store_recent",
    "inventory_run_unfinished",
    "inventory_run_payload_ttl",
    "inventory_run_lake_position",
    "inventory_rejection_lookup",
    "inventory_rejection_created",
    "inventory_signal_store_recent",
    "inventory_signal_created",
}


def secondary_indexes() -> set[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.indexname FROM pg_indexes i
            JOIN pg_class c ON c.relname = i.indexname JOIN pg_index x ON x.indexrelid = c.oid
            WHERE i.tablename LIKE 'inventory\\_%%' AND NOT x.indisunique
            """
        )
        return {name for (name,) in cursor.fetchall()}


def plan(queryset_or_sql, params=None) -> str:
    """The plan with sequential scans priced out, so that tiny test tables still show which index
    serves the query (and a query no index serves shows a Seq Scan)."""
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        if isinstance(queryset_or_sql, str):
            cursor.execute("EXPLAIN " + queryset_or_sql, params)
            return "\n".join(row[0] for row in cursor.fetchall())
    return queryset_or_sql.explain()


def test_no_index_beyond_the_queries_that_need_it():
    assert secondary_indexes() == EXPECTED


def test_each_query_plans_onto_its_index():
    store = StoreFactory()
    now = timezone.now()
    cutoff = now - timedelta(days=1)
    # Histories as in production (many stores over weeks; finished runs far outnumber unfinished
    # ones), analysed, so the planner prices the indexes on real statistics: on empty tables two
    # plans cost the same and either one won, by whatever statistics earlier tests had left.
    others = StoreFactory.create_batch(10)
    IngestionRun.objects.bulk_create(
        IngestionRun(store=other, source="api", status=RunStatus.SUCCEEDED, heartbeat_at=cutoff)
        for other in others
        for _ in range(30)
    )
    # A few failed runs re-queued after the lake export passed them, at new positions.
    first = IngestionRun.objects.order_by("id").values_list("id", flat=True)[0]
    IngestionRun.objects.filter(pk__lt=first + 5).update(lake_position=F("id") + 1000, round_started_at=now)
    ShopperSignal.objects.bulk_create(
        ShopperSignal(store=other, sku=f"S{n % 20}", found=n % 3 > 0,
                      created_at=now - timedelta(hours=12 * n))
        for other in others
        for n in range(60)
    )
    ItemRejection.objects.bulk_create(
        ItemRejection(store=other, sku=f"S{n % 20}", run_id=n, reason="no price",
                      created_at=now - timedelta(hours=12 * n))
        for other in others
        for n in range(60)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE inventory_ingestionrun, inventory_shoppersignal, inventory_itemrejection")
    checks = {
        "inventory_item_held": selectors.held_items(),
        "inventory_run_store_recent": selectors.store_runs(store=store)[:50],
        "inventory_run_unfinished": IngestionRun.objects.filter(
            status__in=[RunStatus.QUEUED, RunStatus.RUNNING], heartbeat_at__lt=cutoff
        ).order_by("id"),
        "inventory_run_payload_ttl": IngestionRun.objects.filter(payload_expires_at__lt=now)
        .exclude(payload_path="")
        .exclude(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]),
        "inventory_rejection_lookup": ItemRejection.objects.filter(store=store, sku="A").order_by(
            "-created_at"
        )[:1],
        "inventory_rejection_created": ItemRejection.objects.filter(created_at__lt=cutoff).values("id")[
            :1000
        ],
        "inventory_signal_created": ShopperSignal.objects.filter(created_at__lt=cutoff).values("id")[:1000],
    }
    for index, queryset in checks.items():
        assert index in plan(queryset), (index, plan(queryset))

    # The claim: "no older unfinished run of this store" reads the partial index, not history.
    claim = plan(engine.CLAIM_SQL, {"token": None, "run": 1, "stale": cutoff})
    assert "inventory_run_unfinished" in claim, claim

    # The run's context fetch (catalog + prior item state + the signal window) in one statement.
    context = plan(
        engine.CONTEXT_SQL.replace("%(skus)b", "%(skus)s"),
        {"store": store.pk, "merchant": store.merchant_id, "skus": ["A", "B"], "since": cutoff},
    )
    assert "inventory_signal_store_recent" in context, context
    assert "catalog_unique_merchant_sku" in context and "inventory_inventoryitem_pkey" in context, context

    # The lake stream of outcomes: runs at their id through the primary key, re-queued runs at
    # their new positions through the partial index; rejections through the created_at bound.
    after, until = first + 100, first + 200
    for sql, params in (
        (inventory_lake.BATCH_END_SQL, {"after": after, "high": until, "size": 5000}),
        (inventory_lake.PENDING_SINCE_SQL, {"position": after}),
        (inventory_lake.SELECT_SQL, {"after": after, "until": until}),
    ):
        lake_plan = plan(sql, params)
        assert "inventory_ingestionrun_pkey" in lake_plan, lake_plan
        assert "inventory_run_lake_position" in lake_plan, lake_plan
    assert "inventory_rejection_created" in lake_plan, lake_plan
    high = plan(inventory_lake.HIGH_WATER_SQL, {"queued": "queued", "running": "running"})
    assert "inventory_run_unfinished" in high and "inventory_run_lake_position" in high, high
    # The purge's "not re-queued past the watermark" reads the partial index, not every run.
    purge = plan(
        ItemRejection.objects.filter(created_at__lt=cutoff, run_id__lte=after)
        .exclude(run_id__in=IngestionRun.objects.filter(lake_position__gt=after).values("id"))
        .values("id")[:1000]
    )
    assert "inventory_rejection_created" in purge and "inventory_run_lake_position" in purge, purge
