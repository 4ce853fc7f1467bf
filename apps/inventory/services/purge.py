"""Retention: raw feed payloads, the rejection log and shopper signals are deleted past their
time-to-live, in batches, by a beat job (from any host: payloads are in the shared payload store)."""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from apps.core.lake import lake_position
from apps.inventory import conf
from apps.inventory.lake import STREAM as OUTCOMES
from apps.inventory.models import IngestionRun, ItemRejection, RunStatus, ShopperSignal
from apps.inventory.payloads import payloads_delete


def _delete_in_batches(queryset, batch_size: int) -> int:
    deleted = 0
    while ids := list(queryset.values_list("id", flat=True)[:batch_size]):
        queryset.model.objects.filter(id__in=ids).delete()
        deleted += len(ids)
    return deleted


def inventory_purge_expired(*, batch_size: int = 1000) -> dict[str, int]:
    """Beat job: enforce the TTLs of raw payload files, the rejection log and shopper signals."""
    now = timezone.now()
    payloads = 0
    expired = (
        IngestionRun.objects.filter(payload_expires_at__lt=now)
        .exclude(payload_path="")
        .exclude(status__in=[RunStatus.QUEUED, RunStatus.RUNNING])
    )
    while batch := list(expired.values_list("id", "payload_path")[:batch_size]):
        # With the database store both happen or neither; with a storage backend a payload
        # deleted before a failed update is deleted again next time (deleting nothing is fine).
        with transaction.atomic():
            payloads_delete([path for _run_id, path in batch])
            IngestionRun.objects.filter(id__in=[run_id for run_id, _ in batch]).update(payload_path="")
        payloads += len(batch)
    rejection_ttl = timedelta(days=conf.rejection_ttl_days())
    expired_rejections = ItemRejection.objects.filter(created_at__lt=now - rejection_ttl)
    exported = lake_position(OUTCOMES)
    if exported is not None:
        # Once the lake export runs, a rejection outlives its TTL until its run is in the lake: a
        # run past the watermark, at its id or at the new position a re-queue gave its next round.
        requeued = IngestionRun.objects.filter(lake_position__gt=exported).values("id")
        expired_rejections = expired_rejections.filter(run_id__lte=exported).exclude(run_id__in=requeued)
    rejections = _delete_in_batches(expired_rejections, batch_size)
    signals = _delete_in_batches(
        ShopperSignal.objects.filter(created_at__lt=now - timedelta(days=conf.signal_ttl_days())), batch_size
    )
    return {"payloads": payloads, "rejections": rejections, "signals": signals}
