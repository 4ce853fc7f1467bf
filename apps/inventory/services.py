"""Write use cases of the inventory app: feeds, runs, the batched upsert, review, signals, model, purge.

The write path of a run: per batch of `batch_size` items the pure pipeline produces the rows that
changed; they are COPYed into a temp staging table and ONE statement then (a) logs rejections,
(b) upserts items with ON CONFLICT ... WHERE fingerprint IS DISTINCT FROM, and (c) advances the
run's progress counters, guarded by the run's claim token and batch number. A batch therefore
commits together with its progress or not at all: a killed worker's run resumes at the next batch
with no duplicate or lost items. Write-free batches (an unchanged re-feed) are folded into one
commit, and commits run on a writer thread so the database and the pipeline work in parallel.
"""

from __future__ import annotations

import csv
import gc
import io
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from itertools import islice

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import DEFAULT_DB_ALIAS, connection, connections, transaction
from django.utils import timezone

from apps.core.errors import ApplicationError
from apps.inventory import conf, pipeline
from apps.inventory.models import (
    IngestionRun,
    InventoryItem,
    ItemRejection,
    OosModel,
    RunSource,
    RunStatus,
    ShopperSignal,
    Store,
)

logger = logging.getLogger(__name__)

CSV_REQUIRED = ("sku", "available")
CSV_PRICE_COLUMNS = ("price", "unit_price")
CSV_CONTENT_TYPES = {
    "text/csv",
    "application/csv",
    "text/plain",
    "application/vnd.ms-excel",
    "application/octet-stream",
}
MAX_FEED_ITEMS = 500_000

# ------------------------------------------------------------------------------------ feeds


def _run_create(
    *,
    store: Store,
    source: str,
    body: bytes,
    suffix: str,
    items_total: int,
    batch_size: int | None,
    enqueue: bool,
) -> IngestionRun:
    # The raw payload is on storage before the run exists, so a run never points at nothing.
    path = default_storage.save(f"inventory/feeds/{store.pk}/{uuid.uuid4().hex}.{suffix}", ContentFile(body))
    now = timezone.now()
    with transaction.atomic():
        run = IngestionRun.objects.create(
            store=store,
            source=source,
            items_total=items_total,
            batch_size=batch_size or conf.batch_size(),
            max_attempts=conf.max_attempts(),
            heartbeat_at=now,
            payload_path=path,
            payload_bytes=len(body),
            payload_expires_at=now + timedelta(days=conf.payload_ttl_days()),
        )
        if enqueue:
            from apps.inventory.tasks import ingestion_run_process

            transaction.on_commit(lambda: ingestion_run_process.delay(run.pk))
    return run


def feed_submit_json(
    *, store: Store, body: bytes, batch_size: int | None = None, enqueue: bool = True
) -> IngestionRun:
    """Accept a whole-store JSON feed `{"items": [...]}`: persist it raw, create a run, enqueue it."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApplicationError(
            "The body is not valid JSON.", errors={"non_field_errors": [str(exc)]}
        ) from exc
    if not isinstance(document, dict) or "items" not in document:
        raise ApplicationError("Invalid feed.", errors={"items": ["This field is required."]})
    items = document["items"]
    if not isinstance(items, list):
        raise ApplicationError("Invalid feed.", errors={"items": ["Must be a list of items."]})
    if len(items) > MAX_FEED_ITEMS:
        raise ApplicationError(
            "Invalid feed.", errors={"items": [f"At most {MAX_FEED_ITEMS} items per feed."]}
        )
    return _run_create(
        store=store,
        source=RunSource.API,
        body=body,
        suffix="json",
        items_total=len(items),
        batch_size=batch_size,
        enqueue=enqueue,
    )


def csv_upload_check_size(*, size: int) -> None:
    """Refuse an oversized upload before reading it into memory."""
    if size > conf.csv_max_bytes():
        raise ApplicationError(
            "File too large.",
            errors={"file": [f"The file is {size} bytes; the limit is {conf.csv_max_bytes()} bytes."]},
        )


def feed_submit_csv(
    *,
    store: Store,
    name: str,
    content_type: str,
    body: bytes,
    batch_size: int | None = None,
    enqueue: bool = True,
) -> IngestionRun:
    """Accept an ops CSV upload after checking size, type, encoding and header columns."""
    if len(body) > conf.csv_max_bytes():
        raise ApplicationError(
            "File too large.",
            errors={"file": [f"The file is {len(body)} bytes; the limit is {conf.csv_max_bytes()} bytes."]},
        )
    if not name.lower().endswith(".csv"):
        raise ApplicationError("Not a CSV file.", errors={"file": ["The file name must end with .csv."]})
    if (content_type or "").split(";")[0].strip().lower() not in CSV_CONTENT_TYPES:
        raise ApplicationError(
            "Not a CSV file.", errors={"file": [f"Unsupported content type {content_type!r}."]}
        )
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApplicationError("Unreadable file.", errors={"file": ["The file is not UTF-8 text."]}) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [column.strip().lower() for column in next(reader, [])]
        rows = sum(1 for row in reader if row)
    except csv.Error as exc:
        raise ApplicationError("Unreadable file.", errors={"file": [f"Malformed CSV: {exc}"]}) from exc
    missing = [column for column in CSV_REQUIRED if column not in header]
    if not any(column in header for column in CSV_PRICE_COLUMNS):
        missing.append("price (or unit_price)")
    if missing:
        raise ApplicationError(
            "Missing columns.", errors={"file": [f"The header must contain: {', '.join(missing)}."]}
        )
    return _run_create(
        store=store,
        source=RunSource.CSV,
        body=body,
        suffix="csv",
        items_total=rows,
        batch_size=batch_size,
        enqueue=enqueue,
    )


# ------------------------------------------------------------------------------------- runs

_CLAIM_SQL = """
UPDATE inventory_ingestionrun r SET status = 'running', claim_token = %(token)s, attempts = r.attempts + 1,
    heartbeat_at = clock_timestamp(), started_at = COALESCE(r.started_at, clock_timestamp()), error = ''
FROM inventory_store s
WHERE r.id = %(run)s AND s.id = r.store_id AND r.attempts < r.max_attempts
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
    to_regclass('pg_temp.inventory_stage') IS NOT NULL
"""

_STAGE_SQL = """
CREATE TEMP TABLE IF NOT EXISTS inventory_stage (
    sku text, price_cents integer, is_available boolean, display_status text, status_reason text,
    held_price_cents integer, oos_score double precision, attributes jsonb, fingerprint bigint,
    reject_reason text
) ON COMMIT DELETE ROWS
"""
_COPY_SQL = (
    "COPY inventory_stage (sku, price_cents, is_available, display_status, status_reason, held_price_cents, "
    "oos_score, attributes, fingerprint, reject_reason) FROM STDIN"
)

_CONTEXT_SQL = """
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
_BATCH_SQL = _BATCH_TEMPLATE.replace("__STAGED__", "SELECT * FROM inventory_stage")
_BATCH_SQL_NESTED = _BATCH_TEMPLATE.replace("__STAGED__", "DELETE FROM inventory_stage RETURNING *")

_FINISH_SQL = """
UPDATE inventory_ingestionrun SET status = 'succeeded', finished_at = clock_timestamp(),
    heartbeat_at = clock_timestamp(), duration_s = extract(epoch FROM clock_timestamp() - started_at),
    sla_met = clock_timestamp() - created_at <= make_interval(secs => %(sla)s), claim_token = NULL,
    prediction = %(prediction)s
WHERE id = %(run)s AND claim_token = %(token)s
"""

_FAIL_SQL = """
UPDATE inventory_ingestionrun SET
    status = CASE WHEN attempts < max_attempts THEN 'queued' ELSE 'failed' END,
    finished_at = CASE WHEN attempts < max_attempts THEN NULL ELSE clock_timestamp() END,
    error = %(error)s, claim_token = NULL, heartbeat_at = clock_timestamp()
WHERE id = %(run)s AND claim_token = %(token)s
RETURNING status
"""


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


_predictors: dict[int, pipeline.Predictor] = {}


def _current_predictor(version: int | None) -> tuple[str, pipeline.Predictor]:
    """The current model, looked up once per run (and deserialised once per process and version)."""
    if version is None:
        return pipeline.HEURISTIC, pipeline.heuristic_scores
    if version not in _predictors:
        import joblib

        blob = bytes(OosModel.objects.values_list("blob", flat=True).get(version=version))
        model = joblib.load(io.BytesIO(blob))
        oos_column = list(model.classes_).index(1)
        _predictors.clear()
        _predictors[version] = lambda features, _m=model, _c=oos_column: _m.predict_proba(features)[:, _c]
    return f"model-v{version}", _predictors[version]


def _binary_cursor():
    """A server-side-binding cursor with binary results, still logged like Django's own.

    Django's default client-side binding would inline the feed's 10,000-SKU array as SQL text
    and return rows as text; binary transfer of both is markedly cheaper for the context fetch.
    """
    import psycopg

    connection.ensure_connection()
    raw = psycopg.Cursor(connection.connection)
    raw.format = psycopg.pq.Format.BINARY
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


def _json_items(path: str) -> list:
    with default_storage.open(path, "rb") as fh:
        return json.load(fh)["items"]


def _csv_rows(path: str) -> Iterator[dict]:
    """Stream a stored CSV feed as dicts keyed by lower-cased header names."""
    with default_storage.open(path, "rb") as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
        reader = csv.reader(text)
        header = [column.strip().lower() for column in next(reader, [])]
        for row in reader:
            if row:
                yield dict(zip(header, row, strict=False))


def _batches(items, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def ingestion_run_process(*, run_id: int) -> str:
    """Claim a run and process it to the end, resuming after its last committed batch.

    Returns "succeeded", "retry" (failed, attempts left; the run is queued again), "failed",
    "busy" (another worker holds it and heartbeats), "waiting" (an older run of the store is not
    finished yet), "skipped" (finished, or out of attempts) or "lost" (re-claimed meanwhile).
    """
    token = uuid.uuid4()
    stale = timezone.now() - timedelta(seconds=conf.stale_after_s())
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, {"token": token, "run": run_id, "stale": stale})
        claimed = cursor.fetchone()
    if claimed is None:
        run = IngestionRun.objects.filter(pk=run_id).only("status", "attempts", "max_attempts").first()
        if run is None or run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            return "skipped"
        if run.status == RunStatus.QUEUED and run.attempts < run.max_attempts:
            # Not claimable only because an older run of its store goes first. Its task retries
            # shortly; the heartbeat says so, so the stale check does not queue it a second time.
            IngestionRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
                heartbeat_at=timezone.now()
            )
            return "waiting"
        return "busy" if run.status == RunStatus.RUNNING else "skipped"
    try:
        with _cyclic_gc_paused():
            prediction = _run_batches(run_id, token, claimed)
    except ClaimLost:
        logger.warning("ingestion run %s was re-claimed by another worker", run_id)
        return "lost"
    except Exception as exc:
        logger.exception("ingestion run %s failed", run_id)
        with connection.cursor() as cursor:
            cursor.execute(
                _FAIL_SQL, {"run": run_id, "token": token, "error": f"{type(exc).__name__}: {exc}"}
            )
            row = cursor.fetchone()
        return "retry" if row and row[0] == RunStatus.QUEUED else "failed"
    with connection.cursor() as cursor:
        cursor.execute(
            _FINISH_SQL, {"run": run_id, "token": token, "sla": claimed[10], "prediction": prediction}
        )
    return "succeeded"


@contextmanager
def _cyclic_gc_paused():
    """A run allocates some 100,000 short-lived objects per 10,000 items (parsed items, rows),
    none of them in reference cycles: the cyclic collector would only traverse them again and
    again (~5 % of a run). Reference counting still frees them; collection resumes after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _run_batches(run_id: int, token: uuid.UUID, claimed: tuple) -> str:
    (
        store_id,
        source,
        batch_size,
        batches_done,
        items_done,
        payload_path,
        by_reason,
        merchant_id,
        markup_bps,
        max_ratio,
        _sla,
        guardrails,
        model_version,
        has_stage,
    ) = claimed
    # Django's connection hands JSONB back as text.
    by_reason = json.loads(by_reason) if isinstance(by_reason, str) else dict(by_reason or {})
    # Only SKUs the pipeline can accept are looked up: one with a NUL or a lone surrogate could
    # not even be sent, and would fail the run instead of being rejected on its own.
    valid_sku = pipeline.valid_sku
    if source == RunSource.API:
        items = _json_items(payload_path)
        skus = list({sku for item in items if type(item) is dict and valid_sku(sku := item.get("sku"))})
    else:
        items = None
        skus = list({sku for row in _csv_rows(payload_path) if valid_sku(sku := row.get("sku"))})
    now = timezone.now()
    ctx = pipeline.StoreContext(
        store_id=store_id,
        run_id=run_id,
        markup_bps=markup_bps,
        default_ratio=max_ratio,
        guardrails={},
        catalog={},
        now_epoch=now.timestamp(),
    )
    with _binary_cursor() as cursor:
        cursor.execute(
            _CONTEXT_SQL,
            {
                "store": store_id,
                "merchant": merchant_id,
                "skus": skus,
                "since": now - timedelta(days=conf.signal_window_days()),
            },
        )
        # Rows in pipeline.CatalogEntry's shape, keyed by SKU.
        ctx.catalog = {row[0]: row for row in cursor.fetchall()}
        if isinstance(guardrails, str):
            guardrails = json.loads(guardrails)
        for category, ratio, ceiling in guardrails or ():
            ctx.guardrails[category] = (ratio, ceiling)
        prediction, ctx.predictor = _current_predictor(model_version)
    if not has_stage:
        # The temp table lives as long as the database session: created once per connection.
        with connection.cursor() as cursor:
            cursor.execute(_STAGE_SQL)
    del skus

    rows_iter = items if items is not None else _csv_rows(payload_path)
    if items_done:
        # Resume: the committed batches' SKUs still count for duplicate detection.
        head = list(islice(rows_iter, items_done)) if items is None else items[:items_done]
        pipeline.note_seen(head, ctx)
        del head
        if items is not None:
            rows_iter = items[items_done:]
    throttle = conf.throttle_s()
    # Input batches whose output is small (an unchanged re-feed writes nothing) are folded into
    # one commit until batch_size rows are pending or a heartbeat is due. A commit always ends on
    # an input-batch boundary and carries those batches' progress, so resuming stays exact.
    #
    # Commits run on a writer thread, one at a time, while this thread computes the next batch:
    # the database and the pipeline overlap (two cores). The writer uses this thread's session
    # (same staging table, same test transaction); this thread does no SQL while it runs.
    writer = _Writer(run_id, token, store_id)
    pending = _Pending(first_batch=batches_done)
    last_commit = time.monotonic()
    try:
        for chunk in _batches(rows_iter, batch_size):
            pending.add(pipeline.process_batch(chunk, ctx), by_reason)
            if len(pending.rows) >= batch_size or time.monotonic() - last_commit >= HEARTBEAT_S:
                writer.submit(pending, by_reason)
                pending = _Pending(first_batch=pending.first_batch + pending.batches)
                last_commit = time.monotonic()
            if throttle:
                writer.wait()  # a throttled (test) run commits each batch before sleeping
                time.sleep(throttle)
        if pending.batches:
            writer.submit(pending, by_reason)
        writer.wait()
    finally:
        writer.close()
    return prediction


class _Writer:
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

    def submit(self, pending: _Pending, by_reason: dict) -> None:
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


HEARTBEAT_S = 1.0


class _Pending:
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


def _batch_commit(
    db,
    run_id: int,
    token: uuid.UUID,
    store_id: int,
    pending: _Pending,
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
    with raw.transaction():
        cursor = psycopg.ClientCursor(raw)  # the client-side binding Django itself uses
        cursor = db.make_debug_cursor(cursor) if db.queries_logged else db.make_cursor(cursor)
        with cursor:
            if data:
                with cursor.copy(_COPY_SQL) as copy:
                    copy.write(data)
            handoff.set()
            cursor.execute(_BATCH_SQL if top_level else _BATCH_SQL_NESTED, params)
            if cursor.fetchone()[0] != 1:
                raise ClaimLost(run_id)


def ingestion_runs_requeue_stale(*, stale_after_s: int | None = None, limit: int = 100) -> list[int]:
    """Beat job: re-queue runs whose worker stopped heartbeating (or whose message was lost)."""
    from apps.inventory.tasks import ingestion_run_process as task

    cutoff = timezone.now() - timedelta(
        seconds=conf.stale_after_s() if stale_after_s is None else stale_after_s
    )
    requeued: list[int] = []
    with transaction.atomic():
        runs = list(
            IngestionRun.objects.select_for_update(skip_locked=True)
            .filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING], heartbeat_at__lt=cutoff)
            .order_by("id")
            .only("id", "attempts", "max_attempts")[:limit]
        )
        now = timezone.now()
        for run in runs:
            run.claim_token = None
            run.heartbeat_at = now
            if run.attempts >= run.max_attempts:
                run.status, run.finished_at, run.error = (
                    RunStatus.FAILED,
                    now,
                    "worker stopped; no attempts left",
                )
            else:
                run.status = RunStatus.QUEUED
                requeued.append(run.pk)
        IngestionRun.objects.bulk_update(
            runs, ["claim_token", "heartbeat_at", "status", "finished_at", "error"]
        )
        for run_id in requeued:
            transaction.on_commit(lambda run_id=run_id: task.delay(run_id))
    return requeued


def ingestion_run_requeue(*, run: IngestionRun) -> None:
    """Ops action: give a failed run another round of attempts."""
    from apps.inventory.tasks import ingestion_run_process as task

    with transaction.atomic():
        updated = IngestionRun.objects.filter(pk=run.pk, status=RunStatus.FAILED).update(
            status=RunStatus.QUEUED, attempts=0, finished_at=None, heartbeat_at=timezone.now(), error=""
        )
        if not updated:
            raise ApplicationError("Only failed runs can be re-queued.")
        transaction.on_commit(lambda: task.delay(run.pk))


# ---------------------------------------------------------------------------------- review

_RELEASE_SQL = """
UPDATE inventory_inventoryitem i SET
    price_cents = CASE WHEN %(approve)s THEN i.held_price_cents ELSE i.price_cents END,
    held_price_cents = NULL,
    display_status = CASE
        WHEN NOT %(approve)s AND i.price_cents IS NULL THEN 'rejected'
        WHEN NOT i.is_available THEN 'unavailable'
        WHEN i.oos_score >= %(threshold)s THEN 'predicted_oos'
        ELSE 'shown' END,
    status_reason = CASE
        WHEN NOT %(approve)s AND i.price_cents IS NULL
            THEN 'not shown: held price rejected by ' || %(user)s || ' (no published price)'
        WHEN NOT i.is_available THEN 'not shown: merchant reports unavailable'
        WHEN i.oos_score >= %(threshold)s
            THEN 'not shown: predicted out of stock (score ' || to_char(i.oos_score, 'FM0.00') || ')'
        ELSE '' END,
    attributes = i.attributes || jsonb_build_object('review', jsonb_build_object(
        'decision', CASE WHEN %(approve)s THEN 'approved' ELSE 'rejected' END, 'by', %(user)s,
        'held_price_cents', i.held_price_cents, 'at', %(now)s::text)),
    -- The next feed re-evaluates the item (a rejected price that is fed again is held again).
    fingerprint = NULL, updated_at = %(now)s
FROM unnest(%(stores)s::bigint[], %(skus)s::text[]) AS k(store_id, sku)
WHERE i.store_id = k.store_id AND i.sku = k.sku AND i.display_status = 'held'
"""


def _held_release(*, keys: list[tuple[int, str]], approve: bool, user) -> int:
    if not keys:
        return 0
    params = {
        "approve": approve,
        "threshold": pipeline.OOS_THRESHOLD,
        "user": str(user),
        "now": timezone.now(),
        "stores": [k[0] for k in keys],
        "skus": [k[1] for k in keys],
    }
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_RELEASE_SQL, params)
        return cursor.rowcount


def held_items_approve(*, keys: list[tuple[int, str]], user) -> int:
    """Publish the held prices of these (store_id, sku) items; returns how many were held."""
    return _held_release(keys=keys, approve=True, user=user)


def held_items_reject(*, keys: list[tuple[int, str]], user) -> int:
    """Drop the held prices: the previously published price stays (or the item stays hidden)."""
    return _held_release(keys=keys, approve=False, user=user)


# --------------------------------------------------------------------------------- signals


def shopper_signal_record(*, store: Store, sku: str, found: bool) -> ShopperSignal:
    """Record a found / not-found report; it becomes training history and a prediction feature."""
    now = timezone.now()
    with transaction.atomic():
        item = (
            InventoryItem.objects.select_for_update()
            .filter(store=store, sku=sku)
            .only("is_available", "last_in_stock_at")
            .first()
        )
        if item is None:
            available, hours = None, None
        elif item.is_available:
            available, hours = True, 0.0
        else:
            available = False
            hours = (
                pipeline.MAX_HOURS
                if item.last_in_stock_at is None
                else min(pipeline.MAX_HOURS, (now - item.last_in_stock_at).total_seconds() / 3600)
            )
        signal = ShopperSignal.objects.create(
            store=store,
            sku=sku,
            found=found,
            merchant_available=available,
            hours_since_in_stock=hours,
            created_at=now,
        )
        if item is not None:
            # A fresh signal changes the prediction's inputs: the next feed must re-score the item.
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE inventory_inventoryitem SET fingerprint = NULL, attributes = attributes || "
                    "jsonb_build_object('last_signal', jsonb_build_object('found', %s, 'at', %s::text)) "
                    "WHERE store_id = %s AND sku = %s",
                    [found, now, store.pk, sku],
                )
    return signal


# ----------------------------------------------------------------------------------- model

_TRAINING_SQL = """
SELECT COALESCE(merchant_available, true)::int, COALESCE(hours_since_in_stock, 0),
       count(*) FILTER (WHERE found) OVER w, count(*) FILTER (WHERE NOT found) OVER w,
       (NOT found)::int
FROM (SELECT * FROM inventory_shoppersignal ORDER BY id DESC LIMIT %(limit)s) s
WINDOW w AS (PARTITION BY store_id, sku ORDER BY created_at
             RANGE BETWEEN %(window)s PRECEDING AND CURRENT ROW EXCLUDE CURRENT ROW)
"""


def oos_model_train(*, min_samples: int = 40, limit: int = 200_000) -> OosModel:
    """Train a new out-of-stock classifier from shopper signals; make it current.

    Each signal is a labelled example (not found = out of stock) with the features prediction
    uses: merchant availability and hours since last in stock (snapshotted at signal time), and
    the store+SKU's found / not-found counts in the preceding window.
    """
    import joblib
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    with connection.cursor() as cursor:
        cursor.execute(_TRAINING_SQL, {"limit": limit, "window": timedelta(days=conf.signal_window_days())})
        data = np.asarray(cursor.fetchall(), dtype=np.float64)
    if len(data) < min_samples:
        raise ApplicationError(f"Not enough history to train: {len(data)} signals, need {min_samples}.")
    features, labels = data[:, :4], data[:, 4].astype(int)
    if labels.min() == labels.max() or min(np.bincount(labels)) < 2:
        raise ApplicationError("Not enough history to train: need both found and not-found signals.")
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.25, random_state=0, stratify=labels
    )
    model = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    accuracy = float((model.predict(x_test) == y_test).mean())
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    with transaction.atomic():
        last = OosModel.objects.select_for_update().order_by("-version").first()
        OosModel.objects.filter(is_current=True).update(is_current=False)
        return OosModel.objects.create(
            version=(last.version + 1) if last else 1,
            algorithm="LogisticRegression",
            features=list(pipeline.FEATURES),
            blob=buffer.getvalue(),
            train_samples=len(y_train),
            test_samples=len(y_test),
            accuracy=accuracy,
            is_current=True,
        )


# ----------------------------------------------------------------------------------- purge


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
        for _run_id, path in batch:
            default_storage.delete(path)
        IngestionRun.objects.filter(id__in=[run_id for run_id, _ in batch]).update(payload_path="")
        payloads += len(batch)
    rejections = _delete_in_batches(
        ItemRejection.objects.filter(created_at__lt=now - timedelta(days=conf.rejection_ttl_days())),
        batch_size,
    )
    signals = _delete_in_batches(
        ShopperSignal.objects.filter(created_at__lt=now - timedelta(days=conf.signal_ttl_days())), batch_size
    )
    return {"payloads": payloads, "rejections": rejections, "signals": signals}
