"""Lake export: named streams of rows (case events, case snapshots, inventory outcomes) written
incrementally, exactly once, as hour-partitioned Parquet files through a Django storage.

A stream's rows are ordered by a position (an id). Its source only ever offers positions up to a
high-water mark below which no row can still appear (for CaseEvent, the change-feed fence of
apps/core/feed.py), so a row committed late is never stepped over.

Exactly once: a batch is planned as an id range and the plan is committed on the stream's
LakeWatermark (`pending_until`) before any file is written. Then, with the watermark row locked,
the range's rows are read, written as `<stream>/date=YYYY-MM-DD/hour=HH/<first>-<last>.parquet`
(the range's first and last id, one file per hour its rows fall in) and the watermark advances in
the same transaction. An export that dies after writing a file and before that commit leaves the
plan in place: the next run writes the same range again under the same names, which replace the
first files, so no row is ever in the lake twice or missing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import autodiscover_modules

from apps.core.errors import ApplicationError
from apps.core.models import LakeWatermark

logger = logging.getLogger(__name__)

HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class LakeStream:
    """One exported table.

    `select_sql` selects the rows whose `position` is in (%(after)s, %(until)s], ordered by it,
    with the columns of `schema` in order; timestamp columns as microseconds since the epoch
    (`lake_us`). The rows reach Arrow through `COPY ... TO STDOUT (FORMAT csv)` and Arrow's CSV
    reader: no Python work per row. `time` names the timestamp column that picks the hour
    partition.
    """

    name: str
    schema: pa.Schema
    position: str
    time: str
    select_sql: str
    # The largest position below which no new row can appear; None when it cannot be known now.
    high_water_mark: Callable[[], int | None]
    # (after, high, batch_size) -> the last position of the next batch, at most `high`.
    batch_end: Callable[[int, int, int], int]
    # The time of the oldest row past `position` (None if there is none): the export lag.
    pending_since: Callable[[int], datetime | None]


_streams: dict[str, LakeStream] = {}
_discovered = False


def lake_stream_register(stream: LakeStream) -> LakeStream:
    """Add a stream; apps define theirs in `<app>/lake.py`, found on first use."""
    _streams[stream.name] = stream
    return stream


def lake_streams() -> dict[str, LakeStream]:
    global _discovered
    if not _discovered:
        autodiscover_modules("lake")
        _discovered = True
    return dict(_streams)


def lake_storage() -> Storage:
    return storages[settings.LAKE_STORAGE]


# Helpers for stream definitions ------------------------------------------------------------------

def lake_us(expression: str) -> str:
    """SQL for a timestamptz as integer microseconds since the epoch (exact: extract() is numeric)."""
    return f"(extract(epoch FROM {expression}) * 1000000)::bigint"


def id_batch_end(table: str) -> Callable[[int, int, int], int]:
    """Batches of `batch_size` rows of an id-keyed table: the id of the batch's last row."""

    def batch_end(after: int, high: int, batch_size: int) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                f'SELECT id FROM "{table}" WHERE id > %s AND id <= %s ORDER BY id OFFSET %s LIMIT 1',
                [after, high, batch_size - 1],
            )
            row = cursor.fetchone()
        return row[0] if row else high

    return batch_end


def id_pending_since(table: str, time_column: str) -> Callable[[int], datetime | None]:
    def pending_since(position: int) -> datetime | None:
        with connection.cursor() as cursor:
            cursor.execute(f'SELECT "{time_column}" FROM "{table}" WHERE id > %s ORDER BY id LIMIT 1',
                           [position])
            row = cursor.fetchone()
        return row[0] if row else None

    return pending_since


# Export ----------------------------------------------------------------------------------------

def lake_export(*, streams: list[str] | None = None) -> dict[str, int]:
    """Beat job: export every stream (or those named); returns rows written per stream.

    A stream that fails does not hold up the others; the first error is raised once all ran.
    """
    written: dict[str, int] = {}
    failed: Exception | None = None
    for name in streams or lake_streams():
        try:
            written[name] = lake_stream_export(stream=name)
        except Exception as exc:
            logger.exception("lake export of %s failed", name)
            failed = failed or exc
    if failed is not None:
        raise failed
    return written


def lake_stream_export(*, stream: str, batch_size: int | None = None, max_batches: int | None = None) -> int:
    """Export `stream`'s rows past its watermark, a batch at a time; returns how many were written.

    Safe to run concurrently and to retry: a second exporter skips a stream being planned, and
    waits for (then drops) a batch another exporter is writing.
    """
    spec = lake_streams().get(stream)
    if spec is None:
        raise ApplicationError(f"Unknown lake stream {stream!r}.", errors={"stream": ["Unknown stream."]})
    size = batch_size or settings.LAKE_BATCH_SIZE
    LakeWatermark.objects.get_or_create(stream=spec.name)
    written = 0
    for _ in range(max_batches or settings.LAKE_MAX_BATCHES):
        planned = _batch_plan(spec, size)
        if planned is None:
            break
        written += _batch_export(spec, *planned)
    return written


def _batch_plan(spec: LakeStream, batch_size: int) -> tuple[int, int] | None:
    """The next id range to write, committed on the watermark before any file exists."""
    with transaction.atomic():
        mark = LakeWatermark.objects.select_for_update(skip_locked=True).filter(stream=spec.name).first()
        if mark is None:  # another exporter holds the stream
            return None
        if mark.pending_until is not None:  # an export that died after planning: the same range again
            return mark.position, mark.pending_until
        high = spec.high_water_mark()
        if high is None or high <= mark.position:
            return None
        mark.pending_until = spec.batch_end(mark.position, high, batch_size)
        mark.save(update_fields=["pending_until", "updated_at"])
        return mark.position, mark.pending_until


def _batch_export(spec: LakeStream, after: int, until: int) -> int:
    with transaction.atomic():
        mark = LakeWatermark.objects.select_for_update().get(stream=spec.name)
        if (mark.position, mark.pending_until) != (after, until):
            return 0  # another exporter wrote this range while we waited for the row
        table = lake_rows(spec, after, until)
        _files_write(spec, table, after, until)
        _watermark_advance(mark, until)
    return table.num_rows


def _watermark_advance(mark: LakeWatermark, until: int) -> None:
    mark.position, mark.pending_until, mark.exported_at = until, None, timezone.now()
    mark.save(update_fields=["position", "pending_until", "exported_at", "updated_at"])


def lake_rows(spec: LakeStream, after: int, until: int) -> pa.Table:
    """The stream's rows with a position in (after, until], as an Arrow table of its schema."""
    connection.ensure_connection()
    raw = connection.connection
    query = psycopg.ClientCursor(raw).mogrify(spec.select_sql, {"after": int(after), "until": int(until)})
    data = bytearray()
    with connection.cursor() as cursor, cursor.cursor.copy(f"COPY ({query}) TO STDOUT (FORMAT csv)") as copy:
        for chunk in copy:
            data += chunk
    if not data:
        return spec.schema.empty_table()
    timestamps = [f.name for f in spec.schema if pa.types.is_timestamp(f.type)]
    read_types = {f.name: (pa.int64() if f.name in timestamps else f.type) for f in spec.schema}
    table = pa_csv.read_csv(
        pa.BufferReader(bytes(data)),
        read_options=pa_csv.ReadOptions(column_names=spec.schema.names),
        # Text columns (JSON, reasons) may hold newlines inside their quotes.
        parse_options=pa_csv.ParseOptions(newlines_in_values=True),
        # PostgreSQL's CSV writes NULL unquoted and empty, an empty string as "".
        convert_options=pa_csv.ConvertOptions(
            column_types=read_types, strings_can_be_null=True, quoted_strings_can_be_null=False,
            true_values=["t"], false_values=["f"],
        ),
    )
    for name in timestamps:
        index, field = table.schema.get_field_index(name), spec.schema.field(name)
        table = table.set_column(index, field, table.column(index).cast(field.type))
    return table.cast(spec.schema)


def _files_write(spec: LakeStream, table: pa.Table, after: int, until: int) -> None:
    if not table.num_rows:
        return
    storage = lake_storage()
    hours = pc.divide(table.column(spec.time).cast(pa.int64()), HOUR_US)
    for hour in sorted(pc.unique(hours).to_pylist()):
        part = table.filter(pc.equal(hours, hour))
        at = datetime.fromtimestamp(hour * 3600, tz=UTC)
        # Named by the batch's range, not by the rows found: a retry names its files the same
        # even if a row it read the first time is gone, so it replaces them instead of adding.
        name = f"{spec.name}/date={at:%Y-%m-%d}/hour={at:%H}/{after + 1}-{until}.parquet"
        sink = pa.BufferOutputStream()
        pq.write_table(part, sink, compression="zstd")
        lake_file_put(storage, name, sink.getvalue().to_pybytes())


def lake_file_put(storage: Storage, name: str, content: bytes) -> None:
    """Write `name`, replacing a file a failed export left there; never under another name."""
    if storage.exists(name):
        storage.delete(name)
    saved = storage.save(name, ContentFile(content))
    if saved != name:
        raise RuntimeError(f"lake storage saved {name} as {saved}; it must overwrite in place")


# Reads -----------------------------------------------------------------------------------------

def lake_position(stream: str) -> int | None:
    """How far `stream` is exported; None if it never was (no watermark yet)."""
    return LakeWatermark.objects.filter(stream=stream).values_list("position", flat=True).first()


def lake_watermark_lock(stream: str) -> LakeWatermark | None:
    """`stream`'s watermark (None if it was never exported), held as read until the caller's
    transaction ends: meanwhile no export plans, writes or advances a batch of the stream.

    For a write that moves rows between positions: it must know whether the rows were exported
    already, or are in the range a started export is writing (`pending_until`), and stay so.
    """
    mark = LakeWatermark.objects.select_for_update().filter(stream=stream).first()
    if mark is not None:
        return mark
    # No row to lock: block the exporter's first insert instead (SHARE conflicts with the ROW
    # EXCLUSIVE lock an INSERT or UPDATE takes), then look again, as it may have committed one just
    # now. Under this lock a plain read is stable: a second row lock could deadlock with an export
    # that holds the new row and waits to update it.
    with connection.cursor() as cursor:
        cursor.execute(f'LOCK TABLE "{LakeWatermark._meta.db_table}" IN SHARE MODE')
    return LakeWatermark.objects.filter(stream=stream).first()


def lake_lag_seconds() -> dict[str, float]:
    """Per stream, the age of its oldest row not yet in the lake (0 when it is up to date)."""
    positions = dict(LakeWatermark.objects.values_list("stream", "position"))
    now = timezone.now()
    lags = {}
    for name, spec in lake_streams().items():
        since = spec.pending_since(positions.get(name, 0))
        lags[name] = max(0.0, (now - since).total_seconds()) if since else 0.0
    return lags
