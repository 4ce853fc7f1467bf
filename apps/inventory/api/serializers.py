"""Serializers of the inventory API (output shapes and input checks; no business logic)."""

from rest_framework import serializers

from apps.core.input import BIGINT_MAX
from apps.inventory import pipeline
from apps.inventory.models import IngestionRun, InventoryItem, Store


class StoreSerializer(serializers.ModelSerializer):
    merchant = serializers.CharField(source="merchant.external_id", read_only=True)

    class Meta:
        model = Store
        fields = [
            "id",
            "merchant",
            "external_id",
            "name",
            "price_markup_bps",
            "max_price_ratio",
            "sla_seconds",
        ]
        read_only_fields = fields  # output only: every field is always present


class InventoryItemSerializer(serializers.ModelSerializer):
    class Meta:
        model = InventoryItem
        fields = [
            "sku",
            "price_cents",
            "is_available",
            "display_status",
            "status_reason",
            "held_price_cents",
            "oos_score",
            "attributes",
            "updated_run_id",
            "updated_at",
        ]
        read_only_fields = fields  # output only: every field is always present


class IngestionRunSerializer(serializers.ModelSerializer):
    progress_pct = serializers.IntegerField(read_only=True)

    class Meta:
        model = IngestionRun
        fields = [
            "id",
            "store_id",
            "source",
            "status",
            "attempts",
            "max_attempts",
            "items_total",
            "items_done",
            "progress_pct",
            "received",
            "created",
            "updated",
            "unchanged",
            "rejected",
            "rejected_by_reason",
            "held",
            "predicted_oos",
            "prediction",
            "heartbeat_at",
            "created_at",
            "started_at",
            "finished_at",
            "duration_s",
            "sla_met",
            "error",
        ]
        read_only_fields = fields  # output only: every field is always present


class FeedAcceptedSerializer(serializers.Serializer):
    run_id = serializers.IntegerField()
    status = serializers.CharField()
    items_total = serializers.IntegerField()


class SignalInputSerializer(serializers.Serializer):
    store_id = serializers.IntegerField(min_value=1, max_value=BIGINT_MAX)
    sku = serializers.CharField(max_length=pipeline.SKU_MAX)
    found = serializers.BooleanField()

    def validate_sku(self, value: str) -> str:
        if not pipeline.valid_sku(value):  # the feed's rule: no control characters, storable
            raise serializers.ValidationError("Enter a SKU of printable characters.")
        return value


class SignalRecordedSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The recorded signal.")


class CsvUploadSerializer(serializers.Serializer):
    file = serializers.FileField()


class RejectionSerializer(serializers.Serializer):
    run_id = serializers.IntegerField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class ItemStatusSerializer(serializers.Serializer):
    """Why a SKU is (not) shown in a store: the answer of `selectors.item_status`."""

    store_id = serializers.IntegerField()
    sku = serializers.CharField()
    display_status = serializers.CharField()
    shown = serializers.BooleanField()
    reason = serializers.CharField()
    last_rejection = RejectionSerializer(allow_null=True)
    price_cents = serializers.IntegerField(required=False, allow_null=True)
    held_price_cents = serializers.IntegerField(required=False, allow_null=True)
    is_available = serializers.BooleanField(required=False)
    oos_score = serializers.FloatField(required=False, allow_null=True)
    attributes = serializers.JSONField(required=False)
    updated_run_id = serializers.IntegerField(required=False, allow_null=True)
    updated_at = serializers.DateTimeField(required=False)
