"""Inventory settings (defined in config/settings.py), read at call time so tests can override them."""

from __future__ import annotations

from django.conf import settings


def batch_size() -> int:
    """Items per committed batch (one COPY + one upsert statement)."""
    return settings.INVENTORY_BATCH_SIZE


def throttle_s() -> float:
    """Sleep after each batch; only for tests that need a slow run (kill/resume)."""
    return settings.INVENTORY_THROTTLE_S


# A claimed run's heartbeat is written this often (a thread of its own, and each commit).
HEARTBEAT_S = 1.0


def stale_after_s() -> float:
    """A queued/running run whose heartbeat is older than this is orphaned and queued again: its
    worker died, or its message never reached the broker.

    Never under five missed heartbeats (nor 10 s): a live run that misses a beat or two, on a
    busy database, is not taken from its worker.
    """
    return max(settings.INVENTORY_STALE_AFTER_S, 5 * HEARTBEAT_S, 10.0)


def max_attempts() -> int:
    return settings.INVENTORY_MAX_ATTEMPTS


def payload_ttl_days() -> int:
    return settings.INVENTORY_PAYLOAD_TTL_DAYS


def rejection_ttl_days() -> int:
    return settings.INVENTORY_REJECTION_TTL_DAYS


def signal_ttl_days() -> int:
    return settings.INVENTORY_SIGNAL_TTL_DAYS


def csv_max_bytes() -> int:
    return settings.INVENTORY_CSV_MAX_BYTES


def signal_window_days() -> int:
    """Shopper signals this recent count as features of the prediction."""
    return settings.INVENTORY_SIGNAL_WINDOW_DAYS


PAYLOAD_STORES = ("database", "storage")


def payload_store() -> str:
    """Where raw feed payloads live: "database" (PostgreSQL) or "storage" (a Django storage alias)."""
    store = settings.INVENTORY_PAYLOAD_STORE
    if store not in PAYLOAD_STORES:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured(f"INVENTORY_PAYLOAD_STORE must be one of {PAYLOAD_STORES}, not {store!r}.")
    return store


def payload_storage_alias() -> str:
    """The STORAGES alias payloads go to when INVENTORY_PAYLOAD_STORE is "storage"."""
    return settings.INVENTORY_PAYLOAD_STORAGE
