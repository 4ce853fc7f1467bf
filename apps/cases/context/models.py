"""The cache of outside records: one row per (type, key), read by one indexed lookup."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class ContextType(models.TextChoices):
    DELIVERY = "delivery", "Delivery"
    CUSTOMER = "customer", "Customer"
    MERCHANT = "merchant", "Merchant"
    AGENT = "agent", "Agent (HR)"


KEY_MAX_LENGTH = 200


class ContextRecord(models.Model):
    type = models.CharField(max_length=16, choices=ContextType.choices)
    key = models.CharField(max_length=KEY_MAX_LENGTH)
    data = models.JSONField(default=dict)
    # sha256 of the canonical JSON of `data`: the bulk refresh rewrites only rows whose hash changed.
    data_hash = models.CharField(max_length=64)
    fetched_at = models.DateTimeField()
    stale = models.BooleanField(default=False)
    # Bumped by every stale tag: a fetch that started before a tag must not clear it (the data it
    # got may predate the change the tag announced).
    generation = models.PositiveIntegerField(default=0)

    class Meta:
        verbose_name = "context record"
        constraints = [
            # Also the index of every read, and of a whole type's pass (its leading column).
            models.UniqueConstraint(fields=["type", "key"], name="context_record_type_key"),
            models.CheckConstraint(condition=Q(type__in=ContextType.values),
                                   name="context_record_type_known"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.key}"
