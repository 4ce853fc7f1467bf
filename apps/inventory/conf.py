"""Inventory settings with safe defaults: read from Django settings, else the environment."""

from __future__ import annotations

import os

from django.conf import settings


def _get(name: str, default, cast=int):
    if hasattr(settings, name):
        return getattr(settings, name)
    raw = os.environ.get(name)
    return cast(raw) if raw not in (None, "") else default


def batch_size() -> int:
    """Items per committed batch (one COPY + one upsert statement)."""
    return _get("INVENTORY_BATCH_SIZE", 1000)


def throttle_s() -> float:
    """Sleep after each batch; only for tests that need a slow run (kill/resume)."""
    return _get("INVENTORY_THROTTLE_S", 0.0, float)


def stale_after_s() -> int:
    """A queued/running run whose heartbeat is older than this is re-queued."""
    return _get("INVENTORY_STALE_AFTER_S", 120)


def max_attempts() -> int:
    return _get("INVENTORY_MAX_ATTEMPTS", 3)


def payload_ttl_days() -> int:
    return _get("INVENTORY_PAYLOAD_TTL_DAYS", 7)


def rejection_ttl_days() -> int:
    return _get("INVENTORY_REJECTION_TTL_DAYS", 14)


def signal_ttl_days() -> int:
    return _get("INVENTORY_SIGNAL_TTL_DAYS", 90)


def csv_max_bytes() -> int:
    return _get("INVENTORY_CSV_MAX_BYTES", 20 * 1024 * 1024)


def signal_window_days() -> int:
    """Shopper signals this recent count as features of the prediction."""
    return _get("INVENTORY_SIGNAL_WINDOW_DAYS", 14)
