"""Lake stream of the inventory app: each finished ingestion run's item-level outcomes, so "why was
this item not shown last Tuesday" can be answered from the lake after the database's TTL purge.

Positions are run ids (but see re-queued runs below). A run is exported once it and every run
before it have finished (succeeded or failed): its rows are then final. Rows of a run:
- `rejected`, with the reason: a feed line the pipeline refused (ItemRejection); the item kept
  the state it had;
- the item's display state as the run wrote it (`shown`, `held`, `unavailable`, `predicted_oos`),
  with its reason, price, held price and out-of-stock score, for every item the run changed.
An item a run left unchanged has no row for that run: its state is its latest earlier row. An item
that a later run of the store rewrote before this run was exported appears under the later run.
A failed run that ops re-queue after it was exported takes a new position for its next round
(IngestionRun.lake_position) and is exported again there with the rows decided in that round only.
The purge of rejections waits for this stream's watermark (apps/inventory/services/purge.py).
"""

import pyarrow as pa
from django.db import connection
from django.db.models.expressions import RawSQL

from apps.core.errors import ApplicationError
from apps.core.lake import LakeStream, lake_stream_register, lake_us, lake_watermark_lock
from apps.inventory.models import IngestionRun, InventoryItem, ItemRejection, RunStatus

STREAM = "inventory_outcomes"
RUNS = IngestionRun._meta.db_table
ITEMS = InventoryItem._meta.db_table
REJECTIONS = ItemRejection._meta.db_table
UNFINISHED = (RunStatus.QUEUED.value, RunStatus.RUNNING.value)

# A run's position is COALESCE(lake_position, id). Queries take the two kinds apart so that each
# half reads an index: the primary key for runs at their id, the partial index on lake_position
# for the few re-queued ones.

# Runs finish out of order; the oldest unfinished one holds back every later run. (A run's row is
# created in a short transaction of its own, long before a later run can finish; a re-queue takes
# its new position in a short transaction too.)
HIGH_WATER_SQL = f"""
    SELECT COALESCE(
        (SELECT min(COALESCE(lake_position, id)) - 1 FROM "{RUNS}" WHERE status IN (%(queued)s, %(running)s)),
        GREATEST((SELECT max(id) FROM "{RUNS}"), (SELECT max(lake_position) FROM "{RUNS}")),
        0)
"""

# Positions in (after, high], with the items of each run.
_POSITIONS = f"""
    SELECT id AS position, items_total FROM "{RUNS}"
    WHERE id > %(after)s AND id <= %(high)s AND lake_position IS NULL
    UNION ALL
    SELECT lake_position, items_total FROM "{RUNS}"
    WHERE lake_position > %(after)s AND lake_position <= %(high)s
"""

# Whole runs, until they hold about `batch_size` items (a bigger run goes alone).
BATCH_END_SQL = f"""
    SELECT position FROM (SELECT position, sum(items_total) OVER (ORDER BY position) AS items
                          FROM ({_POSITIONS}) positions) runs
    WHERE items >= %(size)s ORDER BY position LIMIT 1
"""

PENDING_SINCE_SQL = f"""
    SELECT LEAST((SELECT min(finished_at) FROM "{RUNS}" WHERE id > %(position)s AND lake_position IS NULL),
                 (SELECT min(finished_at) FROM "{RUNS}" WHERE lake_position > %(position)s))
"""

SELECT_SQL = f"""
    WITH runs AS (
        SELECT id, store_id, round_started_at, created_at AS since FROM "{RUNS}"
        WHERE id > %(after)s AND id <= %(until)s AND lake_position IS NULL
        UNION ALL
        SELECT id, store_id, round_started_at, round_started_at FROM "{RUNS}"
        WHERE lake_position > %(after)s AND lake_position <= %(until)s
    )
    -- A re-queued run's round: only what it decided since the round started. Its earlier rows are
    -- in the lake already, under its id; the round resumes after the last batch they came from.
    -- Round start and row times are app hosts' clocks: they need to agree only to better than the
    -- time from a run's last batch to ops re-queuing it, and from then to its next batch's commit.
    SELECT r.id, r.store_id, i.sku, i.display_status, i.status_reason, i.price_cents, i.held_price_cents,
           i.oos_score, i.is_available, {lake_us("i.updated_at")}
    FROM runs r JOIN "{ITEMS}" i ON i.store_id = r.store_id AND i.updated_run_id = r.id
    WHERE r.round_started_at IS NULL OR i.updated_at >= r.round_started_at
    UNION ALL
    SELECT j.run_id, j.store_id, j.sku, 'rejected', j.reason, NULL, NULL, NULL, NULL,
           {lake_us("j.created_at")}
    FROM "{REJECTIONS}" j JOIN runs r ON r.id = j.run_id
    WHERE (r.round_started_at IS NULL OR j.created_at >= r.round_started_at)
      -- Rejections are logged after their run (or round) started: the bound lets the created_at
      -- index find them (the log has no run index). An hour of slack for clocks of different hosts.
      AND j.created_at >= (SELECT min(since) FROM runs) - interval '1 hour'
    ORDER BY 1, 3, 4
"""


def _high_water_mark() -> int:
    with connection.cursor() as cursor:
        cursor.execute(HIGH_WATER_SQL, {"queued": UNFINISHED[0], "running": UNFINISHED[1]})
        return cursor.fetchone()[0]


def _batch_end(after: int, high: int, batch_size: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(BATCH_END_SQL, {"after": after, "high": high, "size": batch_size})
        row = cursor.fetchone()
    return row[0] if row else high


def _pending_since(position: int) -> object:
    with connection.cursor() as cursor:
        cursor.execute(PENDING_SINCE_SQL, {"position": position})
        return cursor.fetchone()[0]


def outcomes_round_position(*, run: IngestionRun) -> RawSQL | None:
    """For a failed run being re-queued: the new position its next round takes in the stream
    (an expression for the run's update), or None when it keeps the one it has.

    Call inside the re-queue's transaction: the stream's watermark stays locked until it commits,
    so no export passes the run meanwhile. A run the lake has passed needs a new position, or its
    next round's rows would never be exported; one it has not reached yet keeps its position and is
    exported there once, this round's rows with the earlier ones (the round start is only set, and
    only filters rows, when the position moves).
    """
    position = run.lake_position or run.pk
    mark = lake_watermark_lock(STREAM)
    if mark is None or position > (mark.pending_until or mark.position):
        return None
    if position > mark.position:
        # The export planned this run's rows in the range it is writing; moved now, they would
        # drop out of that range before its files are written (or rewritten after a crash).
        raise ApplicationError(f"The lake export is writing run {run.pk}; re-queue it again in a minute.")
    # The run table's id sequence: positions of new runs and re-queued rounds share one order, so
    # the round counts after every run that exists, and the high-water mark's argument holds.
    return RawSQL("nextval(pg_get_serial_sequence(%s, 'id'))", [RUNS])


inventory_outcomes = lake_stream_register(LakeStream(
    name=STREAM,
    schema=pa.schema([
        ("run_id", pa.int64()), ("store_id", pa.int64()), ("sku", pa.string()), ("outcome", pa.string()),
        ("reason", pa.string()), ("price_cents", pa.int64()), ("held_price_cents", pa.int64()),
        ("oos_score", pa.float64()), ("is_available", pa.bool_()),
        ("decided_at", pa.timestamp("us", tz="UTC")),
    ]),
    position="run_id",
    time="decided_at",
    select_sql=SELECT_SQL,
    high_water_mark=_high_water_mark,
    batch_end=_batch_end,
    pending_since=_pending_since,
))
