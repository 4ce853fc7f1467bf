"""The Parquet lake export: rows read back with DuckDB equal the database's, hour partitions,
exactly once across a crash between writing a file and advancing the watermark, the change-feed
fence, a held watermark, inventory outcomes kept past the TTL purge and exported again (once) for a
run re-queued after its export, the lag gauge."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from django.core.management import call_command
from django.db import connection, transaction
from django.utils import timezone

from apps.cases import services as case_services
from apps.cases.models import Case, CaseEvent
from apps.core import feed, lake
from apps.core.errors import ApplicationError
from apps.core.models import LakeWatermark
from apps.inventory import pipeline
from apps.inventory import services as inventory_services
from apps.inventory.models import IngestionRun, InventoryItem, ItemRejection, RunStatus
from tests.factories.accounts import UserFactory
from tests.factories.cases import QueueFactory, make_case
from tests.factories.inventory import StoreFactory, catalog_create, feed_body
from tests.utils.waiting import wait_for

HANG = 120.0
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.fixture
def lake_root(settings, tmp_path) -> Path:
    settings.STORAGES = {**settings.STORAGES, "lake": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path), "allow_overwrite": True},
    }}
    return tmp_path


def us(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def read(root: Path, stream: str, columns: str) -> list[tuple]:
    return duckdb.sql(
        f"SELECT {columns} FROM read_parquet('{root}/{stream}/**/*.parquet', hive_partitioning=true)"
    ).fetchall()


def db_events() -> list[tuple]:
    rows = CaseEvent.objects.values_list("id", "case_id", "kind", "actor_id", "data", "created_at")
    return [(pk, str(case_id), kind, actor, data, us(at)) for pk, case_id, kind, actor, data, at in rows]


def lake_events(root: Path) -> list[tuple]:
    rows = read(root, "case_events", "id, case_id, kind, actor_id, data, epoch_us(created_at)")
    return sorted((pk, case, kind, actor, json.loads(data), at) for pk, case, kind, actor, data, at in rows)


@pytest.mark.django_db
def test_events_and_snapshots_are_exported_once_and_read_back_as_in_the_database(lake_root):
    queue = QueueFactory()
    agent = UserFactory()
    first, second = make_case(queue=queue, subject="Late, \"cold\"\norder"), make_case(queue=queue)
    case_services.case_add_note(case=first, body='quotes " commas , newline\n and ünïcode', actor=agent)
    case_services.case_add_note(case=second, body="{\"not\": \"json\"}")
    case_services.case_update(case=first, priority=3)

    assert lake.lake_stream_export(stream="case_events", batch_size=2) == 5  # three batches
    assert lake.lake_stream_export(stream="case_events", batch_size=2) == 0
    assert lake_events(lake_root) == db_events()
    assert LakeWatermark.objects.get(stream="case_events").position == CaseEvent.objects.latest("id").id

    lake.lake_stream_export(stream="case_snapshots", batch_size=2)
    snapshots = read(lake_root, "case_snapshots", "event_id, case_id, queue, subject, priority, fields")
    last_events = {str(case.id): case.events.latest("id").id for case in (first, second)}
    # One row per case per batch that touched it; its newest row is its state.
    newest = {case_id: max((row for row in snapshots if row[1] == case_id), key=lambda row: row[0])
              for case_id in last_events}
    for case in Case.objects.all():
        event_id, _, queue_slug, subject, priority, fields = newest[str(case.id)]
        assert (event_id, queue_slug, subject, priority, json.loads(fields)) == (
            last_events[str(case.id)], queue.slug, case.subject, case.priority, case.fields)


@pytest.mark.django_db
def test_files_are_partitioned_by_the_hour_of_their_rows(lake_root, monkeypatch):
    moments = [datetime(2026, 3, 1, 9, 59, 59, 999999, tzinfo=UTC), datetime(2026, 3, 1, 10, 0, tzinfo=UTC),
               datetime(2026, 3, 1, 10, 59, tzinfo=UTC), datetime(2026, 3, 2, 0, 0, tzinfo=UTC)]
    case = make_case()
    for body, moment in zip("abcd", moments, strict=True):
        monkeypatch.setattr(timezone, "now", lambda moment=moment: moment)
        case_services.case_add_note(case=case, body=body)
    monkeypatch.undo()
    notes = list(CaseEvent.objects.filter(kind="note").order_by("id").values_list("id", flat=True))
    created = case.events.get(kind="created").id
    after = lake.lake_position("case_events") or 0

    lake.lake_stream_export(stream="case_events")

    files = sorted(str(path.relative_to(lake_root)) for path in lake_root.rglob("*.parquet"))
    batch = f"{after + 1}-{notes[-1]}.parquet"
    now_hour = case.events.get(kind="created").created_at
    assert files == sorted([
        f"case_events/date=2026-03-01/hour=09/{batch}", f"case_events/date=2026-03-01/hour=10/{batch}",
        f"case_events/date=2026-03-02/hour=00/{batch}",
        f"case_events/date={now_hour:%Y-%m-%d}/hour={now_hour:%H}/{batch}",
    ])
    by_hour = read(lake_root, "case_events", "id, date::varchar, hour::int")
    assert sorted(by_hour) == [(created, f"{now_hour:%Y-%m-%d}", now_hour.hour), (notes[0], "2026-03-01", 9),
                               (notes[1], "2026-03-01", 10), (notes[2], "2026-03-01", 10),
                               (notes[3], "2026-03-02", 0)]


@pytest.mark.django_db
def test_a_crash_after_writing_files_rewrites_the_same_files_each_event_lands_once(lake_root, monkeypatch):
    case = make_case()
    for n in range(4):
        case_services.case_add_note(case=case, body=f"note {n}")
    crashes = []

    def crash(mark, until):
        crashes.append(until)
        raise RuntimeError("worker died before the watermark advanced")

    monkeypatch.setattr(lake, "_watermark_advance", crash)
    with pytest.raises(RuntimeError):
        lake.lake_stream_export(stream="case_events")
    written = sorted(lake_root.rglob("*.parquet"))
    assert written and len(read(lake_root, "case_events", "id")) == 5  # the files are there...
    mark = LakeWatermark.objects.get(stream="case_events")
    assert (mark.position, mark.pending_until) == (0, crashes[0])  # ...the watermark is not

    monkeypatch.undo()
    case_services.case_add_note(case=case, body="after the crash")  # must not widen the retried batch
    assert lake.lake_stream_export(stream="case_events") == 6

    ids = [row[0] for row in read(lake_root, "case_events", "id")]
    assert sorted(ids) == sorted(set(ids)) == list(CaseEvent.objects.values_list("id", flat=True))
    assert set(written) <= set(lake_root.rglob("*.parquet"))  # replaced under the same names
    assert lake_events(lake_root) == db_events()


def waits_for_lock(pid: int, kind: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() == ("Lock", kind)


def waits_for_advisory_lock(pid: int) -> bool:
    return waits_for_lock(pid, "advisory")


def exporter_thread(stream: str) -> tuple[threading.Thread, list[int], list[int]]:
    """A thread that exports `stream` on a connection of its own (not started): the thread, the
    backend pid it exports from once known, and the rows it wrote once done."""
    pid: list[int] = []
    exported: list[int] = []

    def export():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                pid.append(cursor.fetchone()[0])
            exported.append(lake.lake_stream_export(stream=stream))
        finally:
            connection.close()

    return threading.Thread(target=export), pid, exported


@pytest.mark.django_db(transaction=True)
def test_an_event_committed_late_under_a_lower_id_is_not_skipped(lake_root, monkeypatch):
    monkeypatch.setattr(feed, "FENCE_TIMEOUT_MS", HANG * 1000)
    case_a, case_b = make_case(), make_case()
    lake.lake_stream_export(stream="case_events")
    written, release = threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                case_services.case_add_note(case=case_a, body="slow")  # takes the lower id
                written.set()
                release.wait(HANG)
        finally:
            connection.close()

    exporter, exporter_pid, exported = exporter_thread("case_events")
    writer = threading.Thread(target=slow_writer)
    writer.start()
    try:
        assert written.wait(HANG)
        case_services.case_add_note(case=case_b, body="fast")  # higher id, committed first
        exporter.start()
        wait_for(lambda: exporter_pid and waits_for_advisory_lock(exporter_pid[0]),
                 "the exporter to wait for the open writer")
    finally:
        release.set()
        writer.join(HANG)
        if exporter.ident is not None:
            exporter.join(HANG)
    assert exported == [2]
    notes = [json.loads(data)["body"] for data, in read(lake_root, "case_events", "data") if "body" in data]
    assert sorted(notes) == ["fast", "slow"]


def watermark_held(stream: str, release: threading.Event) -> tuple[threading.Thread, list]:
    """A thread holding `stream`'s watermark lock until `release`; the list gets what it read."""
    held, seen = threading.Event(), []

    def hold():
        try:
            with transaction.atomic():
                seen.append(lake.lake_watermark_lock(stream))
                held.set()
                release.wait(HANG)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert held.wait(HANG)
    return thread, seen


@pytest.mark.django_db(transaction=True)
def test_a_held_watermark_keeps_exports_out_even_before_the_first_one(lake_root):
    """What a re-queue relies on: while it holds the watermark, no export of the stream plans or
    writes a batch, and an export that would create the watermark waits for it."""
    make_case()
    release = threading.Event()
    holder, seen = watermark_held("case_events", release)
    exporter, exporter_pid, exported = exporter_thread("case_events")
    try:
        assert seen == [None]  # never exported: no row to lock, the table is locked instead
        exporter.start()
        wait_for(lambda: exporter_pid and waits_for_lock(exporter_pid[0], "relation"),
                 "the first export to wait for the held watermark")
    finally:
        release.set()
        holder.join(HANG)
        if exporter.ident is not None:
            exporter.join(HANG)
    assert exported == [1]

    make_case()
    release.clear()
    holder, seen = watermark_held("case_events", release)
    try:
        assert seen[0].position == CaseEvent.objects.order_by("id").first().id
        assert lake.lake_stream_export(stream="case_events") == 0  # the stream is held: skipped
    finally:
        release.set()
        holder.join(HANG)
    assert lake.lake_stream_export(stream="case_events") == 1


def ingest(store, items, *, process: bool = True):
    run = inventory_services.feed_submit_json(store=store, body=feed_body(items), enqueue=False)
    if process:
        assert inventory_services.ingestion_run_process(run_id=run.pk) == "succeeded"
    return run


@pytest.mark.django_db
def test_inventory_outcomes_are_exported_per_finished_run_and_outlive_the_purge(lake_root):
    store = StoreFactory()
    skus = catalog_create(store.merchant, 3)
    first = ingest(store, [{"sku": skus[0], "price": 1.5}, {"sku": skus[1]},  # no price: rejected
                           {"sku": skus[2], "price": 2, "available": False}])
    queued = ingest(store, [{"sku": skus[0], "price": 9}], process=False)
    ingest(StoreFactory(), [{"sku": "NOT-IN-CATALOG", "price": 1}])  # finished, behind the queued run

    lake.lake_stream_export(stream="inventory_outcomes")

    rows = read(lake_root, "inventory_outcomes", "run_id, store_id, sku, outcome, reason, price_cents")
    expected = [(first.pk, store.pk, sku, status, reason, price) for sku, status, reason, price in
                InventoryItem.objects.filter(updated_run_id=first.pk)
                .values_list("sku", "display_status", "status_reason", "price_cents")]
    expected += [(first.pk, store.pk, sku, "rejected", reason, None) for sku, reason in
                 ItemRejection.objects.filter(run_id=first.pk).values_list("sku", "reason")]
    assert sorted(rows) == sorted(expected)
    assert {row[2] for row in rows if row[3] == "rejected"} == {skus[1]} and len(rows) == 3
    assert lake.lake_position("inventory_outcomes") == queued.pk - 1  # the unfinished run holds the rest

    # Past the TTL, only rejections already in the lake are purged.
    ItemRejection.objects.update(created_at=timezone.now() - timedelta(days=400))
    assert inventory_services.inventory_purge_expired()["rejections"] == 1
    assert list(ItemRejection.objects.values_list("sku", flat=True)) == ["NOT-IN-CATALOG"]


# Re-queued runs ---------------------------------------------------------------------------------

OUTCOMES = "inventory_outcomes"


def ingest_failing(store, items, monkeypatch, *, breaks_at: str) -> IngestionRun:
    """A run of two-item batches whose pipeline breaks on the batch holding `breaks_at`, at every
    attempt: it commits the batches before that one, then fails for good."""
    run = inventory_services.feed_submit_json(store=store, body=feed_body(items), enqueue=False, batch_size=2)
    process_batch = pipeline.process_batch

    def breaking(chunk, ctx):
        if any(item.get("sku") == breaks_at for item in chunk):
            raise RuntimeError("pipeline bug")
        return process_batch(chunk, ctx)

    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "process_batch", breaking)
        outcomes = [inventory_services.ingestion_run_process(run_id=run.pk) for _ in range(3)]
    assert outcomes == ["retry", "retry", "failed"]
    run.refresh_from_db()
    assert (run.status, run.items_done) == (RunStatus.FAILED, 2)
    return run


def four_items(skus) -> list[dict]:
    # First batch: shown at 1.00, rejected (no price). Second batch: unavailable at 2.00, rejected.
    return [{"sku": skus[0], "price": 1}, {"sku": skus[1]},
            {"sku": skus[2], "price": 2, "available": False}, {"sku": skus[3]}]


def first_round(run, skus) -> list[tuple]:
    return [(run.pk, skus[0], "shown", "", 100), (run.pk, skus[1], "rejected", "missing price", None)]


def second_round(run, skus) -> list[tuple]:
    return [(run.pk, skus[2], "unavailable", "not shown: merchant reports unavailable", 200),
            (run.pk, skus[3], "rejected", "missing price", None)]


def outcomes(root: Path) -> list[tuple]:
    return sorted(read(root, OUTCOMES, "run_id, sku, outcome, reason, price_cents"))


def requeue_and_finish(run) -> IngestionRun:
    inventory_services.ingestion_run_requeue(run=run)
    assert inventory_services.ingestion_run_process(run_id=run.pk) == "succeeded"
    run.refresh_from_db()
    return run


@pytest.mark.django_db
def test_a_failed_run_requeued_after_its_export_is_exported_again_with_its_new_round(lake_root, monkeypatch):
    store, other = StoreFactory(), StoreFactory()
    skus = catalog_create(store.merchant, 4)
    failed = ingest_failing(store, four_items(skus), monkeypatch, breaks_at=skus[2])
    assert lake.lake_stream_export(stream=OUTCOMES) == 2
    later = ingest(other, [{"sku": catalog_create(other.merchant, 1)[0], "price": 3}])
    assert lake.lake_stream_export(stream=OUTCOMES) == 1
    assert lake.lake_position(OUTCOMES) == later.pk

    failed = requeue_and_finish(failed)
    # The new round counts after every run there is, the later one included.
    assert failed.lake_position > later.pk and failed.round_started_at is not None
    assert lake.lake_stream_export(stream=OUTCOMES) == 2

    assert outcomes(lake_root) == sorted([
        *first_round(failed, skus), (later.pk, "SKU-000000", "shown", "", 300), *second_round(failed, skus),
    ])
    assert lake.lake_position(OUTCOMES) == failed.lake_position
    assert lake.lake_stream_export(stream=OUTCOMES) == 0


@pytest.mark.django_db
def test_a_crash_while_re_exporting_a_requeued_run_leaves_each_row_once(lake_root, monkeypatch):
    store = StoreFactory()
    skus = catalog_create(store.merchant, 4)
    failed = ingest_failing(store, four_items(skus), monkeypatch, breaks_at=skus[2])
    lake.lake_stream_export(stream=OUTCOMES)
    failed = requeue_and_finish(failed)

    def crash(mark, until):
        raise RuntimeError("worker died before the watermark advanced")

    with monkeypatch.context() as patched:
        patched.setattr(lake, "_watermark_advance", crash)
        with pytest.raises(RuntimeError):
            lake.lake_stream_export(stream=OUTCOMES)
    written = set(lake_root.rglob("*.parquet"))
    assert outcomes(lake_root) == sorted(first_round(failed, skus) + second_round(failed, skus))
    mark = LakeWatermark.objects.get(stream=OUTCOMES)
    assert (mark.position, mark.pending_until) == (failed.pk, failed.lake_position)

    # A run finished meanwhile must not widen the retried batch; it is the next one.
    after = ingest(store, [{"sku": skus[0], "price": 5}])
    assert lake.lake_stream_export(stream=OUTCOMES) == 3
    assert outcomes(lake_root) == sorted(
        [*first_round(failed, skus), *second_round(failed, skus), (after.pk, skus[0], "shown", "", 500)]
    )
    assert written <= set(lake_root.rglob("*.parquet"))  # replaced under the same names


@pytest.mark.django_db
@pytest.mark.parametrize("lake_started", [False, True], ids=["never-exported", "exported-up-to-before-it"])
def test_a_failed_run_requeued_before_its_export_is_exported_once_whole(lake_root, monkeypatch, lake_started):
    store = StoreFactory()
    skus = catalog_create(store.merchant, 4)
    if lake_started:
        ingest(store, [{"sku": skus[0], "price": 7}])
        assert lake.lake_stream_export(stream=OUTCOMES) == 1
    failed = ingest_failing(store, four_items(skus), monkeypatch, breaks_at=skus[2])

    failed = requeue_and_finish(failed)
    assert (failed.lake_position, failed.round_started_at) == (None, None)  # keeps its id
    lake.lake_stream_export(stream=OUTCOMES)

    rows = [row for row in outcomes(lake_root) if row[0] == failed.pk]
    assert rows == sorted(first_round(failed, skus) + second_round(failed, skus))
    assert lake.lake_position(OUTCOMES) == failed.pk


@pytest.mark.django_db
def test_a_run_the_export_is_writing_is_not_requeued_until_it_is_written(lake_root, monkeypatch):
    store = StoreFactory()
    skus = catalog_create(store.merchant, 4)
    failed = ingest_failing(store, four_items(skus), monkeypatch, breaks_at=skus[2])
    with monkeypatch.context() as patched:  # the export planned the run's range, then died
        patched.setattr(lake, "_watermark_advance", lambda mark, until: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            lake.lake_stream_export(stream=OUTCOMES)

    # Moved now, the run's first round would drop out of the range whose files are written.
    with pytest.raises(ApplicationError, match="lake export is writing"):
        inventory_services.ingestion_run_requeue(run=failed)
    failed.refresh_from_db()
    assert (failed.status, failed.lake_position) == (RunStatus.FAILED, None)

    assert lake.lake_stream_export(stream=OUTCOMES) == 2
    failed = requeue_and_finish(failed)
    assert lake.lake_stream_export(stream=OUTCOMES) == 2
    assert outcomes(lake_root) == sorted(first_round(failed, skus) + second_round(failed, skus))


@pytest.mark.django_db
def test_the_purge_keeps_a_requeued_runs_rejections_until_it_is_exported_again(lake_root, monkeypatch,
                                                                                settings):
    settings.INVENTORY_REJECTION_TTL_DAYS = 0  # every rejection is past its time-to-live at once
    store, other = StoreFactory(), StoreFactory()
    skus = catalog_create(store.merchant, 4)
    failed = ingest_failing(store, four_items(skus), monkeypatch, breaks_at=skus[2])
    later = ingest(other, [{"sku": "NOT-IN-CATALOG", "price": 1}])
    lake.lake_stream_export(stream=OUTCOMES)
    failed = requeue_and_finish(failed)

    # The later run is in the lake; the re-queued run's new round is not: none of its rejections go.
    assert inventory_services.inventory_purge_expired()["rejections"] == 1
    assert sorted(ItemRejection.objects.values_list("run_id", "sku")) == [
        (failed.pk, skus[1]), (failed.pk, skus[3])
    ]

    lake.lake_stream_export(stream=OUTCOMES)
    assert inventory_services.inventory_purge_expired()["rejections"] == 2
    assert sorted(row[:2] for row in outcomes(lake_root) if row[2] == "rejected") == sorted(
        [(failed.pk, skus[1]), (later.pk, "NOT-IN-CATALOG"), (failed.pk, skus[3])]
    )


@pytest.mark.django_db
def test_lag_gauge_and_command(lake_root, client):
    make_case()

    def lag(stream: str) -> float:
        prefix = f'casehub_lake_export_lag_seconds{{stream="{stream}"}} '
        text = client.get("/metrics").content.decode()
        return float(next(line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix)))

    assert lag("case_events") > 0
    out = io.StringIO()
    call_command("lake_export", "case_events", stdout=out)
    assert out.getvalue() == "case_events: 1 rows\n"
    assert lag("case_events") == 0.0
