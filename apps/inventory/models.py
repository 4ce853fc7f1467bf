"""Inventory data: stores, the business-wide catalog, per-store items, ingestion runs and history.

InventoryItem is keyed by (store_id, sku) — the natural key every feed and lookup uses, and the
distribution column for a partitioned / Citus deployment. Indexes exist only for queries the
app makes; each one says which.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Store(models.Model):
    # db_index=False on foreign keys led by a composite index or key: that index serves them.
    merchant = models.ForeignKey(
        "merchants.Merchant", on_delete=models.CASCADE, related_name="stores", db_index=False
    )
    external_id = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    # Store pricing config, fetched once per run: a markup in basis points (250 = +2.5 %).
    price_markup_bps = models.IntegerField(default=0)
    # Default guardrail: a price change beyond this factor up or down is held for review.
    max_price_ratio = models.FloatField(default=10.0)
    # Processing SLA of one whole-store run, from enqueue to finish.
    sla_seconds = models.PositiveIntegerField(default=300)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["merchant", "external_id"], name="store_unique_external_id"),
            models.CheckConstraint(condition=Q(max_price_ratio__gt=1), name="store_max_price_ratio_gt_1"),
            models.CheckConstraint(
                condition=Q(price_markup_bps__gt=-10000), name="store_markup_gt_minus_100pct"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.external_id})"


class PriceGuardrail(models.Model):
    """Bounds for one category, for one store or (store empty) for every store."""

    store = models.ForeignKey(
        Store, null=True, blank=True, on_delete=models.CASCADE, related_name="guardrails", db_index=False
    )
    category = models.CharField(max_length=100)
    max_ratio = models.FloatField(null=True, blank=True, help_text="Overrides the store's ratio.")
    ceiling_cents = models.PositiveIntegerField(null=True, blank=True, help_text="Absolute price ceiling.")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["store", "category"], name="guardrail_unique_store_category", nulls_distinct=False
            ),
            models.CheckConstraint(
                condition=Q(max_ratio__isnull=True) | Q(max_ratio__gt=1), name="guardrail_max_ratio_gt_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.category} @ {self.store_id or 'all stores'}"


class Unit(models.TextChoices):
    EACH = "each", "each"
    KG = "kg", "kilogram"
    LB = "lb", "pound"


class CatalogItem(models.Model):
    """Business-wide attributes of a SKU, shared by every store of the merchant."""

    merchant = models.ForeignKey(
        "merchants.Merchant", on_delete=models.CASCADE, related_name="catalog", db_index=False
    )
    sku = models.CharField(max_length=64)
    name = models.CharField(max_length=200)
    brand = models.CharField(max_length=100, blank=True)
    category = models.CharField(max_length=100)
    unit = models.CharField(max_length=8, choices=Unit.choices, default=Unit.EACH)
    # Weighted items are priced per unit of weight; a shelf item weighs this much on average.
    average_weight = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [
            # Also the index of the per-run catalog fetch (merchant_id, sku = ANY(...)).
            models.UniqueConstraint(fields=["merchant", "sku"], name="catalog_unique_merchant_sku"),
            models.CheckConstraint(
                condition=Q(unit="each") | Q(average_weight__gt=0),
                name="catalog_weighted_has_weight",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sku} {self.name}"

    @property
    def is_weighted(self) -> bool:
        return self.unit != Unit.EACH


class DisplayStatus(models.TextChoices):
    SHOWN = "shown", "shown"
    HELD = "held", "held by price guardrail"
    UNAVAILABLE = "unavailable", "unavailable (merchant)"
    PREDICTED_OOS = "predicted_oos", "predicted out of stock"
    REJECTED = "rejected", "rejected"


class InventoryItem(models.Model):
    """One SKU in one store: the published price, availability and why it is (not) shown."""

    pk = models.CompositePrimaryKey("store_id", "sku")
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="items", db_index=False)
    sku = models.CharField(max_length=64)
    # Published price; NULL while a new item's first price is held by a guardrail.
    price_cents = models.IntegerField(null=True)
    is_available = models.BooleanField(default=True)
    display_status = models.CharField(max_length=16, choices=DisplayStatus.choices)
    status_reason = models.CharField(max_length=300, blank=True)
    held_price_cents = models.IntegerField(null=True, blank=True)
    oos_score = models.FloatField(null=True)
    # Frequently updated feed attributes (quantity, aisle, unit price, last signal) in one JSONB
    # column: one wide row update instead of many narrow columns changing together.
    attributes = models.JSONField(default=dict)
    # Digest of everything a feed writes (not run ids or timestamps): the pipeline skips an item
    # whose digest is unchanged, and the upsert's WHERE compares it. NULL forces the next write.
    fingerprint = models.BigIntegerField(null=True)
    last_in_stock_at = models.DateTimeField(null=True)
    updated_run_id = models.BigIntegerField(null=True)
    updated_at = models.DateTimeField()

    class Meta:
        indexes = [
            # Review queue: held items across stores (a small subset of the table).
            models.Index(
                fields=["store", "sku"], name="inventory_item_held", condition=Q(display_status="held")
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(price_cents__gte=0) | Q(price_cents__isnull=True), name="item_price_gte_0"
            ),
            models.CheckConstraint(
                condition=~Q(display_status="held") | Q(held_price_cents__isnull=False),
                name="item_held_has_price",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.store_id}/{self.sku}"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "queued"
    RUNNING = "running", "running"
    SUCCEEDED = "succeeded", "succeeded"
    FAILED = "failed", "failed"


class RunSource(models.TextChoices):
    API = "api", "batch API (JSON)"
    CSV = "csv", "flat file (CSV)"


class IngestionRun(models.Model):
    """One whole-store feed: its raw payload, progress, heartbeat and outcome counts."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="runs", db_index=False)
    source = models.CharField(max_length=8, choices=RunSource.choices)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField(default=3)
    # Fixed at creation so a resumed run cuts the feed at the same boundaries.
    batch_size = models.PositiveIntegerField(default=1000)
    batches_done = models.PositiveIntegerField(default=0)
    items_total = models.PositiveIntegerField(default=0)
    items_done = models.PositiveIntegerField(default=0)
    received = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    rejected_by_reason = models.JSONField(default=dict, blank=True)
    held = models.PositiveIntegerField(default=0)
    predicted_oos = models.PositiveIntegerField(default=0)
    prediction = models.CharField(max_length=64, blank=True, help_text="Model version or heuristic used.")
    # Claimed by one worker at a time; a batch commits only while the claim still holds.
    claim_token = models.UUIDField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_s = models.FloatField(null=True, blank=True)
    sla_met = models.BooleanField(null=True)
    error = models.TextField(blank=True)
    payload_path = models.CharField(max_length=300, blank=True)
    payload_bytes = models.PositiveBigIntegerField(default=0)
    payload_expires_at = models.DateTimeField(null=True, blank=True)
    # The run's position in the lake stream of outcomes (apps/inventory/lake.py) when it is not
    # its id: a failed run re-queued after the export passed it takes a new one for its next
    # round, and that round's rows (decided since round_started_at) are exported there.
    lake_position = models.BigIntegerField(null=True, blank=True)
    round_started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # Recent runs of a store (API, admin, metrics "last run per store").
            models.Index(fields=["store", "-id"], name="inventory_run_store_recent"),
            # Unfinished runs only (a handful): the claim's "no older unfinished run of this
            # store" check, and stale-heartbeat detection.
            models.Index(
                fields=["store", "heartbeat_at"],
                name="inventory_run_unfinished",
                condition=Q(status__in=["queued", "running"]),
            ),
            # TTL purge of raw payloads still on disk.
            models.Index(
                fields=["payload_expires_at"], name="inventory_run_payload_ttl", condition=~Q(payload_path="")
            ),
            # The lake export's ranges of re-queued runs' positions, and the purge's check of them
            # (a handful of runs).
            models.Index(
                fields=["lake_position"],
                name="inventory_run_lake_position",
                condition=Q(lake_position__isnull=False),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(items_done__lte=models.F("items_total")), name="run_items_done_lte_total"
            ),
            models.CheckConstraint(
                condition=Q(attempts__lte=models.F("max_attempts")), name="run_attempts_lte_max"
            ),
            # One run of a store at a time: two feeds of a store written concurrently would
            # interleave their batches. The claim's SQL decides the order; this guards it.
            models.UniqueConstraint(
                fields=["store"], condition=Q(status="running"), name="run_one_running_per_store"
            ),
            # A moved position comes with its round's start, and lies past the run's own id: it is
            # taken from the id sequence when the run is re-queued, long after the run was created.
            models.CheckConstraint(
                condition=Q(lake_position__isnull=True, round_started_at__isnull=True)
                | Q(
                    lake_position__isnull=False,
                    lake_position__gt=models.F("id"),
                    round_started_at__isnull=False,
                ),
                name="run_lake_position_after_id_with_round",
            ),
        ]

    def __str__(self) -> str:
        return f"run {self.pk} ({self.store_id}, {self.status})"

    @property
    def progress_pct(self) -> int:
        return int(100 * self.items_done / self.items_total) if self.items_total else 0


class PayloadChunk(models.Model):
    """A piece of a raw feed payload kept in PostgreSQL (INVENTORY_PAYLOAD_STORE = "database"), so
    that any worker on any host reads any feed, and the purge deletes it from anywhere."""

    pk = models.CompositePrimaryKey("name", "seq")
    # The storage name a run's payload_path holds.
    name = models.CharField(max_length=300)
    seq = models.PositiveIntegerField()
    data = models.BinaryField()

    def __str__(self) -> str:
        return f"{self.name}#{self.seq}"


class ItemRejection(models.Model):
    """Per-item rejection log (append-only, TTL-purged): "why is this SKU not shown?"."""

    # No FK constraint: the log is append-only and purged by age, not kept consistent with stores.
    store = models.ForeignKey(
        Store, on_delete=models.DO_NOTHING, related_name="+", db_constraint=False, db_index=False
    )
    sku = models.CharField(max_length=64)
    run_id = models.BigIntegerField()
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            # Latest rejection of one (store, sku).
            models.Index(fields=["store", "sku", "-created_at"], name="inventory_rejection_lookup"),
            # TTL purge.
            models.Index(fields=["created_at"], name="inventory_rejection_created"),
        ]

    def __str__(self) -> str:
        return f"{self.store_id}/{self.sku}: {self.reason}"


class ShopperSignal(models.Model):
    """A shopper found (or did not find) an item at the shelf: training history for the model."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="+", db_index=False)
    sku = models.CharField(max_length=64)
    found = models.BooleanField()
    # Features snapshotted at signal time, so training sees what prediction would have seen.
    merchant_available = models.BooleanField(null=True)
    hours_since_in_stock = models.FloatField(null=True)
    created_at = models.DateTimeField()

    class Meta:
        indexes = [
            # Per-run aggregate of a store's signals in the feature window (store_id = ? AND
            # created_at >= ?): a range scan of exactly the window, not of the store's whole TTL.
            models.Index(fields=["store", "created_at"], name="inventory_signal_store_recent"),
            # TTL purge.
            models.Index(fields=["created_at"], name="inventory_signal_created"),
        ]

    def __str__(self) -> str:
        return f"{self.store_id}/{self.sku}: {'found' if self.found else 'not found'}"


class OosModel(models.Model):
    """A trained out-of-stock classifier version (joblib bytes) and its held-out accuracy."""

    version = models.PositiveIntegerField(unique=True)
    algorithm = models.CharField(max_length=100)
    features = models.JSONField()
    blob = models.BinaryField()
    train_samples = models.PositiveIntegerField()
    test_samples = models.PositiveIntegerField()
    accuracy = models.FloatField(help_text="Accuracy on held-out data.")
    is_current = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_current"], condition=Q(is_current=True), name="oosmodel_one_current"
            ),
        ]

    def __str__(self) -> str:
        return f"OOS model v{self.version} ({self.accuracy:.1%})"
