"""The run engine's SQL and batch writer: the statements a run sends, the COPY encoder of the
staging rows, and the writer thread that commits batches.

The write path of a run: per batch of `batch_size` items the pure pipeline produces the rows that
changed; they are COPYed into a temp staging table and ONE statement then (a) logs rejections,
(b) upserts items with ON CONFLICT ... WHERE fingerprint IS DISTINCT FROM, and (c) advances the
run's progress counters, guarded by the run's claim token and batch number. A batch therefore
commits together with its progress or not at all: a killed worker's run resumes at the next batch
with no duplicate or lost items. Write-free batches (an unchanged re-feed) are folded into one
commit, and commits run on a writer thread so the database and the pipeline work in parallel.
While a worker holds a run, a heartbeat thread keeps its heartbeat fresh, however long one
commit takes; a run whose heartbeat goes quiet is orphaned (conf.stale_after_s) and resumed.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import uuid

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.utils import timezone

from apps.inventory import conf, pipeline

logger = logging.getLogger(__name__)

_CLAIM_TEMPLATE = """
UPDATE inventory_ingestionrun r SET status = 'running', claim_token = %(token)s, attempts = r.attempts + 1,
    heartbeat_at = clock_timestamp(), started_at = COALESCE(r.started_at, clock_timestamp()), error = ''
FROM inventory_store s
WHERE r.id = __RUN__ AND s.id = r.store_id AND r.attempts < r.max_attempts
  AND (r.status = 'queued' OR (r.status = 'running' AND r.heartbeat_at < %(stale)s))
  -- One run of a store at a time, oldest first: two feeds of a store written concurrently would
  -- interleave their batches and leave a mix of both, an older price overwriting a newer one.
  AND NOT EXISTS (SELECT 1 FROM inventory_ingestionrun o WHERE o.store_id = r.store_id AND o.id < r.id
                  AND o.status IN ('queued', 'running'))
RETURNING r.store_id, r.source, r.batch_size, r.batches_done, r.items_done, r.payload_path,
    r.rejected_by_reason, s.merchant_id, s.price_markup_bps, s.max_price_ratio, s.sla_seconds,
    -- Store-level dependencies ride along: guardrails (store-specific last, so they override the
    -- all-stores ones) and the current model version.
    (SELECT jsonb_agg(jsonb_build_array(g.category, g.max_ratio, g.ceiling_cents)
                      ORDER BY g.store_id NULLS FIRST)
     FROM inventory_priceguardrail g WHERE g.store_id = r.store_id OR g.store_id IS NULL),
    (SELECT version FROM inventory_oosmodel WHERE is_current),
    to_regclass('pg_temp.inventory_stage') IS NOT NULL, r.id
"""
# The run a message names.
CLAIM_SQL = _CLAIM_TEMPLATE.replace("__RUN__", "%(run)s")
# The next runnable run of any store: the oldest unfinished run of a store with nothing in
# progress. A run another worker is claiming right now is locked, so skipped, and the store's
# later runs are not candidates while it is unfinished. A run queued again after a failure
# (attempts > 0) waits out its task's backoff, or the stale window, before anyone else takes it.
CLAIM_NEXT_SQL = _CLAIM_TEMPLATE.replace(
    "__RUN__",
    """(
    SELECT c.id FROM inventory_ingestionrun c
    WHERE c.status IN ('queued', 'running') AND c.attempts < c.max_attempts
      AND ((c.status = 'queued' AND c.attempts = 0) OR c.heartbeat_at < %(stale)s)
      AND NOT EXISTS (SELECT 1 FROM inventory_ingestionrun o WHERE o.store_id = c.store_id AND o.id < c.id
                      AND o.status IN ('queued', 'running'))
    ORDER BY c.id LIMIT 1 FOR UPDATE OF c SKIP LOCKED)""",
)

STAGE_SQL = """
CREATE TEMP TABLE IF NOT EXISTS inventory_stage (
    sku text, price_cents integer, is_available boolean, display_status text, status_reason text,
    held_price_cents integer, oos_score double precision, attributes jsonb, fingerprint bigint,
    reject_reason text
) ON COMMIT DELETE ROWS
"""
COPY_SQL = (
    "COPY inventory_stage (sku, price_cents, is_available, display_status, status_reason, held_price_cents, "
    "oos_score, attributes, fingerprint, reject_reason) FROM STDIN"
)

CONTEXT_SQL = """
WITH sig AS (
    SELECT sku, count(*) FILTER (WHERE found) AS found, count(*) FILTER (WHERE NOT found) AS not_found
    FROM inventory_shoppersignal WHERE store_id = %(store)s AND created_at >= %(since)s GROUP BY sku
)
SELECT c.sku, c.category, CASE WHEN c.unit = 'each' THEN NULL ELSE c.average_weight END,
       i.price_cents, i.fingerprint, extract(epoch FROM i.last_in_stock_at)::float8,
       COALESCE(sig.found, 0), COALESCE(sig.not_found, 0)
FROM inventory_catalogitem c
LEFT JOIN inventory_inventoryitem i ON i.store_id = %(store)s AND i.sku = c.sku
LEFT JOIN sig ON sig.sku = c.sku
-- A join to unnest(), not sku = ANY(array): the planner estimates ANY over a 10,000-element
-- array element by element, which costs more than running the query. The array is sent in
-- binary (the b placeholder): psycopg's text dump quotes each element through a regex, ~4x slower.
JOIN unnest(%(skus)b::text[]) AS feed(sku) ON feed.sku = c.sku
WHERE c.merchant_id = %(merchant)s
"""

_BATCH_TEMPLATE = """
WITH staged AS (
    __STAGED__
), rej AS (
    INSERT INTO inventory_itemrejection (store_id, sku, run_id, reason, created_at)
    SELECT %(store)s, sku, %(run)s, reject_reason, %(now)s FROM staged WHERE reject_reason IS NOT NULL
), up AS (
    INSERT INTO inventory_inventoryitem AS t (store_id, sku, price_cents, is_available, display_status,
        status_reason, held_price_cents, oos_score, attributes, fingerprint, last_in_stock_at, updated_run_id,
        updated_at)
    SELECT %(store)s, sku, price_cents, is_available, display_status, status_reason, held_price_cents,
        oos_score,
        attributes, fingerprint, CASE WHEN is_available THEN %(now)s END, %(run)s, %(now)s
    FROM staged WHERE reject_reason IS NULL
    ON CONFLICT (store_id, sku) DO UPDATE SET
        price_cents = EXCLUDED.price_cents, is_available = EXCLUDED.is_available,
        display_status = EXCLUDED.display_status, status_reason = EXCLUDED.status_reason,
        held_price_cents = EXCLUDED.held_price_cents, oos_score = EXCLUDED.oos_score,
        -- Feed keys are replaced as a set; keys written by review and signals are kept.
        attributes = (t.attributes - '{quantity,aisle,unit_price_cents,average_weight}'::text[])
            || EXCLUDED.attributes, fingerprint = EXCLUDED.fingerprint,
        -- "last seen in stock": now if it is, or was until this feed, in stock.
        last_in_stock_at = CASE WHEN EXCLUDED.is_available OR t.is_available THEN EXCLUDED.updated_at
                                ELSE t.last_in_stock_at END,
        updated_run_id = EXCLUDED.updated_run_id, updated_at = EXCLUDED.updated_at
    -- The fingerprint digests every fed value, attributes included: no JSONB comparison per row.
    WHERE (t.price_cents, t.is_available, t.display_status, t.held_price_cents, t.oos_score, t.fingerprint)
          IS DISTINCT FROM (EXCLUDED.price_cents, EXCLUDED.is_available, EXCLUDED.display_status,
                            EXCLUDED.held_price_cents, EXCLUDED.oos_score, EXCLUDED.fingerprint)
    RETURNING (t.xmax = 0) AS inserted
), tally AS (
    SELECT count(*) FILTER (WHERE inserted) AS created, count(*) FILTER (WHERE NOT inserted) AS updated
    FROM up
), progress AS (
    UPDATE inventory_ingestionrun r SET
        batches_done = r.batches_done + %(batches)s, items_done = r.items_done + %(received)s,
        received = r.received + %(received)s, created = r.created + tally.created,
        updated = r.updated + tally.updated,
        unchanged = r.unchanged + %(unchanged)s + %(valid_written)s - tally.created - tally.updated,
        rejected = r.rejected + %(rejected)s, rejected_by_reason = %(by_reason)s, held = r.held + %(held)s,
        predicted_oos = r.predicted_oos + %(predicted_oos)s, heartbeat_at = clock_timestamp()
    FROM tally
    WHERE r.id = %(run)s AND r.claim_token = %(token)s AND r.batches_done = %(batch)s
    RETURNING 1
)
SELECT count(*) FROM progress
"""

# At top level (the worker) ON COMMIT DELETE ROWS empties the staging table as each batch
# commits. Inside an outer transaction (a savepoint per batch, as in tests) nothing does, so
# there the statement consumes the rows itself; at top level that delete would cost ~10 % of the
# statement for nothing.
BATCH_SQL = _BATCH_TEMPLATE.replace("__STAGED__", "SELECT * FROM inventory_stage")
BATCH_SQL_NESTED = _BATCH_TEMPLATE.replace("__STAGED__", "DELETE FROM inventory_stage RETURNING *")

# Both end a claim and name the store's next queued run (NULL if none; no row if the claim was
# lost), so it is handed on to a worker at once: nobody polls a busy store.
FINISH_SQL = """
WITH done AS (
    UPDATE inventory_ingestionrun SET status = 'succeeded', finished_at = clock_timestamp(),
        heartbeat_at = clock_timestamp(), duration_s = extract(epoch FROM clock_timestamp() - started_at),
        sla_met = clock_timestamp() - created_at <= make_interval(secs => %(sla)s), claim_token = NULL,
        prediction = %(prediction)s
    WHERE id = %(run)s AND claim_token = %(token)s
    RETURNING store_id
)
SELECT (SELECT n.id FROM inventory_ingestionrun n WHERE n.store_id = done.store_id AND n.status = 'queued'
        AND n.id <> %(run)s ORDER BY n.id LIMIT 1)
FROM done
"""

FAIL_SQL = """
WITH done AS (
    UPDATE inventory_ingestionrun SET
        status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
        finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE clock_timestamp() END,
        error = %(error)s, claim_token = NULL, heartbeat_at = clock_timestamp()
    WHERE id = %(run)s AND claim_token = %(token)s
    RETURNING store_id, status
)
SELECT status, (SELECT n.id FROM inventory_ingestionrun n WHERE n.store_id = done.store_id
                AND n.status = 'queued' AND n.id <> %(run)s ORDER BY n.id LIMIT 1)
FROM done
"""

# Only while the claim is ours; a row the writer's commit holds is skipped: that commit writes
# the heartbeat itself, and the heartbeat must never wait behind it.
HEARTBEAT_SQL = """
UPDATE inventory_ingestionrun SET heartbeat_at = clock_timestamp()
WHERE id = (SELECT id FROM inventory_ingestionrun WHERE id = %(run)s AND claim_token = %(token)s
            FOR UPDATE SKIP LOCKED)
"""

HEARTBEAT_S = conf.HEARTBEAT_S


def stage_table_create(cursor) -> None:
    """Create the session's staging table; it lives as long as the database session."""
    cursor.execute(STAGE_SQL)


def stage_copy(cursor, data: bytes) -> None:
    """COPY staging rows already encoded by copy_text."""
    with cursor.copy(COPY_SQL) as copy:
        copy.write(data)


_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_NULL = "\\N"


def copy_text(rows: list[tuple]) -> bytes:
    """The staging rows in COPY's text format, as psycopg's write_row would send them.

    Hand-written for the row shapes the pipeline makes (a valid row, or a SKU and a rejection
    reason): ~30 % cheaper than write_row, and run on the pipeline's thread rather than the
    writer's. Valid SKUs are printable and the attributes are JSON (control characters already
    escaped), so only a backslash needs escaping there; reasons and rejected SKUs may hold more.
    """
    lines = []
    append = lines.append
    for sku, published, available, status, reason, held, score, attrs, fp, rejected in rows:
        if rejected is None:
            if "\\" in sku:
                sku = sku.replace("\\", "\\\\")
            if reason:
                reason = reason.translate(_COPY_ESCAPES)
            if "\\" in attrs:
                attrs = attrs.replace("\\", "\\\\")
            append(
                f"{sku}\t{_NULL if published is None else published}\t{'t' if available else 'f'}\t{status}"
                f"\t{reason}\t{_NULL if held is None else held}\t{score!r}\t{attrs}\t{fp}\t{_NULL}\n"
            )
        else:
            sku, rejected = sku.translate(_COPY_ESCAPES), rejected.translate(_COPY_ESCAPES)
            append(
                f"{sku}\t{_NULL}\t{_NULL}\t{_NULL}\t{_NULL}\t{_NULL}\t{_NULL}\t{_NULL}\t{_NULL}\t{rejected}\n"
            )
    return "".join(lines).encode()


class ClaimLost(Exception):
    """Another worker re-claimed the run (ours was presumed dead): stop without committing."""


def _logged(db, raw_cursor):
    """A psycopg cursor wrapped as Django wraps its own, so it is logged and counted alike."""
    return db.make_debug_cursor(raw_cursor) if db.queries_logged else db.make_cursor(raw_cursor)


def binary_cursor():
    """A server-side-binding cursor with binary results, still logged like Django's own.

    Django's default client-side binding would inline the feed's 10,000-SKU array as SQL text
    and return rows as text; binary transfer of both is markedly cheaper for the context fetch.
    """
    import psycopg

    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    raw.format = psycopg.pq.Format.BINARY
    return _logged(connection, raw)


class Heartbeat:
    """Writes a claimed run's heartbeat every HEARTBEAT_S from a thread of its own, on its own
    database connection, for as long as the run is processed (a context manager).

    Commits carry the heartbeat too, but one commit may wait on locks or a slow disk for longer
    than the stale window; the run's worker is alive all the while and must keep it. A worker
    that dies takes this thread with it, so its run goes quiet and is resumed elsewhere.
    """

    def __init__(self, run_id: int, token: uuid.UUID, *, interval: float = HEARTBEAT_S) -> None:
        self.params = {"run": run_id, "token": token}
        self.interval = interval
        self.stopped = threading.Event()
        # In a copy of this context: a sandbox run's heartbeat connection joins the sandbox.
        self.thread = threading.Thread(target=contextvars.copy_context().run, args=(self._beat,),
                                       name=f"inventory-heartbeat-{run_id}", daemon=True)

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stopped.set()
        self.thread.join()

    def _beat(self) -> None:
        # `connection` is per thread: this one opens its own, in autocommit, and closes it.
        try:
            while not self.stopped.wait(self.interval):
                try:
                    with connection.cursor() as cursor:
                        cursor.execute(HEARTBEAT_SQL, self.params)
                except Exception:
                    # The writer meets the same database error and fails the run; until then, beat
                    # on, on a new connection (a broken one would fail every beat after).
                    run_id = self.params["run"]
                    logger.warning("ingestion run %s: heartbeat not written", run_id, exc_info=True)
                    connection.close()
        finally:
            connection.close()


class Pending:
    """Output and counts of input batches processed but not yet committed."""

    __slots__ = (
        "batches",
        "first_batch",
        "held",
        "predicted_oos",
        "received",
        "rejected",
        "rows",
        "unchanged",
        "valid_written",
    )

    def __init__(self, *, first_batch: int) -> None:
        self.first_batch = first_batch
        self.batches = self.received = self.unchanged = self.valid_written = 0
        self.rejected = self.held = self.predicted_oos = 0
        self.rows: list[tuple] = []

    def add(self, result: pipeline.BatchResult, by_reason: dict) -> None:
        self.batches += 1
        self.rows.extend(result.rows)
        self.received += result.received
        self.unchanged += result.unchanged
        self.valid_written += result.valid_written
        self.rejected += result.rejected
        self.held += result.held
        self.predicted_oos += result.predicted_oos
        for reason, count in result.rejected_by_reason.items():
            by_reason[reason] = by_reason.get(reason, 0) + count


class BatchWriter:
    """Commits pending batches on one background thread, at most one in flight."""

    def __init__(self, run_id: int, token: uuid.UUID, store_id: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.args = (run_id, token, store_id)
        # `connection` is a per-thread proxy: resolve this thread's wrapper for the writer.
        self.db = connections[DEFAULT_DB_ALIAS]
        self.db.ensure_connection()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inventory-writer")
        self.future = None

    def wait(self) -> None:
        if self.future is not None:
            future, self.future = self.future, None
            future.result()  # re-raises the writer's error (ClaimLost, database errors) here

    def submit(self, pending: Pending, by_reason: dict) -> None:
        # Serialised here, while the previous batch still runs on the server: the writer's own
        # Python work (under the GIL) is then only a few calls.
        data = copy_text(pending.rows)
        self.wait()
        handoff = threading.Event()
        self.future = self.executor.submit(
            _batch_commit, self.db, *self.args, pending, data, json.dumps(by_reason), handoff
        )
        # Let the writer COPY its rows and send the statement before this thread goes back to the
        # CPU-bound pipeline: otherwise it holds the GIL for a whole batch while the writer (and
        # the database behind it) waits to start, or to read each server reply. The statement
        # then runs on the server while this thread computes the next batch, GIL released.
        handoff.wait()

    def close(self) -> None:
        # Never leave a commit running when the caller goes on to use the connection.
        if self.future is not None:
            self.future.exception()
        self.executor.shutdown(wait=True)


def _batch_commit(
    db,
    run_id: int,
    token: uuid.UUID,
    store_id: int,
    pending: Pending,
    data: bytes,
    by_reason_json: str,
    handoff: threading.Event,
) -> None:
    """COPY the pending rows, then one statement: log rejections, upsert, advance progress."""
    try:
        _batch_write(db, run_id, token, store_id, pending, data, by_reason_json, handoff)
    finally:
        handoff.set()  # never leave the submitting thread waiting, whatever happened


def _batch_write(db, run_id, token, store_id, pending, data, by_reason_json, handoff) -> None:
    import psycopg

    params = {
        "store": store_id,
        "run": run_id,
        "token": token,
        "batch": pending.first_batch,
        "batches": pending.batches,
        "now": timezone.now(),
        "received": pending.received,
        "unchanged": pending.unchanged,
        "valid_written": pending.valid_written,
        "rejected": pending.rejected,
        "by_reason": by_reason_json,
        "held": pending.held,
        "predicted_oos": pending.predicted_oos,
    }
    raw = db.connection
    top_level = raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    # psycopg's own transaction block: BEGIN/COMMIT, or a savepoint inside an outer transaction.
    # The cursor binds client-side, as Django's own do.
    with raw.transaction(), _logged(db, psycopg.ClientCursor(raw)) as cursor:
        if data:
            stage_copy(cursor, data)
        handoff.set()
        cursor.execute(BATCH_SQL if top_level else BATCH_SQL_NESTED, params)
        if cursor.fetchone()[0] != 1:
            raise ClaimLost(run_id)
