"""Lake stream of the inventory app: each finished ingestion run's item-level outcomes, so "why was
this item not shown last Tuesday" can be answered from the lake after the database's TTL purge.

Positions are run ids. A run is exported once it and every run before it have finished (succeeded
or failed): its rows are then final. Rows of a run:
- `rejected`, with the reason: a feed line the pipeline refused (ItemRejection); the item kept
  the state it had;
- the item's display state as the run wrote it (`shown`, `held`, `unavailable`, `predicted_oos`),
  with its reason, price, held price and out-of-stock score, for every item the run changed.
An item a run left unchanged has no row for that run: its state is its latest earlier row. An item
that a later run of the store rewrote before this run was exported appears under the later run.
The purge of rejections waits for this stream's watermark (apps/inventory/services/purge.py).
"""

import pyarrow as pa
from django.db import connection

from apps.core.lake import LakeStream, lake_stream_register, lake_us
from apps.inventory.models import IngestionRun, InventoryItem, ItemRejection, RunStatus

RUNS = IngestionRun._meta.db_table
ITEMS = InventoryItem._meta.db_table
REJECTIONS = ItemRejection._meta.db_table
UNFINISHED = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)


def _high_water_mark() -> int:
    # Runs finish out of order; the oldest unfinished one holds back every later run. (A run's
    # row is created in a short transaction of its own, long before a later run can finish.)
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT COALESCE((SELECT min(id) - 1 FROM "{RUNS}" WHERE status IN (%s, %s)), '
            f'(SELECT max(id) FROM "{RUNS}"), 0)', list(UNFINISHED),
        )
        return cursor.fetchone()[0]


def _batch_end(after: int, high: int, batch_size: int) -> int:
    """Whole runs, until they hold about `batch_size` items (a bigger run goes alone)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""SELECT id FROM (SELECT id, sum(items_total) OVER (ORDER BY id) AS items FROM "{RUNS}"
                WHERE id > %s AND id <= %s) runs WHERE items >= %s ORDER BY id LIMIT 1""",
            [after, high, batch_size],
        )
        row = cursor.fetchone()
    return row[0] if row else high


def _pending_since(position: int) -> object:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT min(finished_at) FROM "{RUNS}" WHERE id > %s', [position])
        return cursor.fetchone()[0]


inventory_outcomes = lake_stream_register(LakeStream(
    name="inventory_outcomes",
    schema=pa.schema([
        ("run_id", pa.int64()), ("store_id", pa.int64()), ("sku", pa.string()), ("outcome", pa.string()),
        ("reason", pa.string()), ("price_cents", pa.int64()), ("held_price_cents", pa.int64()),
        ("oos_score", pa.float64()), ("is_available", pa.bool_()),
        ("decided_at", pa.timestamp("us", tz="UTC")),
    ]),
    position="run_id",
    time="decided_at",
    select_sql=f"""
        SELECT r.id, r.store_id, i.sku, i.display_status, i.status_reason, i.price_cents, i.held_price_cents,
               i.oos_score, i.is_available, {lake_us("i.updated_at")}
        FROM "{RUNS}" r JOIN "{ITEMS}" i ON i.store_id = r.store_id AND i.updated_run_id = r.id
        WHERE r.id > %(after)s AND r.id <= %(until)s
        UNION ALL
        SELECT j.run_id, j.store_id, j.sku, 'rejected', j.reason, NULL, NULL, NULL, NULL,
               {lake_us("j.created_at")}
        FROM "{REJECTIONS}" j
        WHERE j.run_id > %(after)s AND j.run_id <= %(until)s
          -- Rejections are logged after their run was created: the bound lets the created_at index
          -- find them (the log has no run index). An hour of slack for clocks of different hosts.
          AND j.created_at >= (SELECT min(created_at) FROM "{RUNS}" WHERE id > %(after)s AND id <= %(until)s)
                              - interval '1 hour'
        ORDER BY 1, 3, 4
    """,
    high_water_mark=_high_water_mark,
    batch_end=_batch_end,
    pending_since=_pending_since,
))
