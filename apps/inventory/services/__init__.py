"""Write use cases of the inventory app, one module each: feeds, runs, review, shopper signals,
the out-of-stock model and purge; engine holds the run's SQL and batch writer.

Callers use `services.<name>`; the names are re-exported here so they need not know the modules.
"""

# The store feeds are written to and runs read from (tests open a run's raw payload through it).
from apps.inventory.payloads import payload_storage
from apps.inventory.services.engine import HEARTBEAT_S, ClaimLost, copy_text
from apps.inventory.services.feeds import (
    CSV_CONTENT_TYPES,
    CSV_PRICE_COLUMNS,
    CSV_REQUIRED,
    MAX_FEED_ITEMS,
    csv_upload_check_size,
    feed_submit_csv,
    feed_submit_csv_upload,
    feed_submit_json,
)
from apps.inventory.services.oos_model import oos_model_train
from apps.inventory.services.purge import inventory_purge_expired
from apps.inventory.services.review import held_items_approve, held_items_reject
from apps.inventory.services.runs import (
    ingestion_run_busy_retry,
    ingestion_run_process,
    ingestion_run_process_next,
    ingestion_run_requeue,
    ingestion_runs_requeue_stale,
)
from apps.inventory.services.shopper_signals import shopper_signal_record

__all__ = [
    "CSV_CONTENT_TYPES",
    "CSV_PRICE_COLUMNS",
    "CSV_REQUIRED",
    "HEARTBEAT_S",
    "MAX_FEED_ITEMS",
    "ClaimLost",
    "copy_text",
    "csv_upload_check_size",
    "feed_submit_csv",
    "feed_submit_csv_upload",
    "feed_submit_json",
    "held_items_approve",
    "held_items_reject",
    "ingestion_run_busy_retry",
    "ingestion_run_process",
    "ingestion_run_process_next",
    "ingestion_run_requeue",
    "ingestion_runs_requeue_stale",
    "inventory_purge_expired",
    "oos_model_train",
    "payload_storage",
    "shopper_signal_record",
]
