"""Ingestion runs: claim a run (the one a message names, or else the next runnable run of any
store), process its feed batch by batch to the end (or fail it) and hand its store's next run on,
and put runs back in the queue: stale ones (their worker died, or their message never reached the
broker) by the beat job, failed ones by ops.

The statements and the batch writer are the engine's (services/engine.py); this module decides
what a run does with them.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from itertools import islice

from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from apps.core.errors import ApplicationError
from apps.core.memory import cyclic_gc_paused
from apps.inventory import conf, pipeline
from apps.inventory.lake import outcomes_round_position
from apps.inventory.models import IngestionRun, RunSource, RunStatus
from apps.inventory.payloads import payload_storage
from apps.inventory.services import engine
from apps.inventory.services.feeds import feed_csv_rows, feed_json_items
from apps.inventory.services.oos_model import oos_predictor
from apps.inventory.services.scheduling import ingestion_run_schedule

logger = logging.getLogger(__name__)


def _batches(items, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def ingestion_run_process(*, run_id: int) -> str:
    """Claim a run and process it to the end, resuming after its last committed batch.

    Returns "succeeded", "retry" (failed, attempts left; the run is queued again), "failed",
    "busy" (another worker holds it and heartbeats), "waiting" (an older run of the store is not
    finished yet: that run hands this one on when it ends), "skipped" (finished, or out of
    attempts) or "lost" (re-claimed meanwhile).
    """
    token = uuid.uuid4()
    claimed = _claim(engine.CLAIM_SQL, {"token": token, "run": run_id, "stale": _stale_before()})
    if claimed is None:
        run = IngestionRun.objects.filter(pk=run_id).only("status", "attempts", "max_attempts").first()
        if run is None or run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            return "skipped"
        if run.status == RunStatus.QUEUED and run.attempts < run.max_attempts:
            return "waiting"
        return "busy" if run.status == RunStatus.RUNNING else "skipped"
    return _process_claimed(run_id, token, claimed)


def ingestion_run_process_next() -> tuple[int, str] | None:
    """Claim the next runnable run of any store (the oldest unfinished run of a store with
    nothing in progress) and process it: (its id, its outcome as ingestion_run_process says), or
    None when no run can start now.

    What a worker does instead of waiting on a busy store: runs behind a busy one are handed on
    when it ends, so a worker that finds nothing returns and nothing is left behind.
    """
    token = uuid.uuid4()
    claimed = _claim(engine.CLAIM_NEXT_SQL, {"token": token, "stale": _stale_before()})
    if claimed is None:
        return None
    run_id = claimed[-1]
    return run_id, _process_claimed(run_id, token, claimed)


def _stale_before():
    return timezone.now() - timedelta(seconds=conf.stale_after_s())


def _claim(sql: str, params: dict) -> tuple | None:
    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()
    except IntegrityError:
        # run_one_running_per_store: another run of the store got there first (a failed older
        # run re-queued by ops while a newer one starts). Not ours to run now.
        return None


def _process_claimed(run_id: int, token: uuid.UUID, claimed: tuple) -> str:
    try:
        with engine.Heartbeat(run_id, token), cyclic_gc_paused():
            prediction = _run_batches(run_id, token, claimed)
    except engine.ClaimLost:
        logger.warning("ingestion run %s was re-claimed by another worker", run_id)
        return "lost"
    except Exception as exc:
        logger.exception("ingestion run %s failed", run_id)
        with connection.cursor() as cursor:
            cursor.execute(
                engine.FAIL_SQL, {"run": run_id, "token": token, "error": f"{type(exc).__name__}: {exc}"}
            )
            row = cursor.fetchone()
        if row and row[0] == RunStatus.QUEUED:
            return "retry"  # still the store's next run: its task retries it after a backoff
        _hand_on(row)
        return "failed"
    with connection.cursor() as cursor:
        cursor.execute(
            engine.FINISH_SQL, {"run": run_id, "token": token, "sla": claimed[10], "prediction": prediction}
        )
        _hand_on(cursor.fetchone())
    return "succeeded"


def _hand_on(row: tuple | None) -> None:
    """Send the store's next queued run (the last column of a finish/fail row) to a worker."""
    if row is not None and row[-1] is not None:
        ingestion_run_schedule(run_id=row[-1])


def _run_batches(run_id: int, token: uuid.UUID, claimed: tuple) -> str:
    # Read from the shared payload store into a local file once, before any batch: the writer
    # thread then has the session to itself, and a CSV feed is read twice from the local copy.
    with payload_storage().open(claimed[5], "rb") as payload:
        return _run_payload(run_id, token, claimed, payload)


def _run_payload(run_id: int, token: uuid.UUID, claimed: tuple, payload) -> str:
    (
        store_id,
        source,
        batch_size,
        batches_done,
        items_done,
        _payload_path,
        by_reason,
        merchant_id,
        markup_bps,
        max_ratio,
        _sla,
        guardrails,
        model_version,
        has_stage,
        _run_id,
    ) = claimed
    # Django's connection hands JSONB back as text.
    by_reason = json.loads(by_reason) if isinstance(by_reason, str) else dict(by_reason or {})
    # Only SKUs the pipeline can accept are looked up: one with a NUL or a lone surrogate could
    # not even be sent, and would fail the run instead of being rejected on its own.
    valid_sku = pipeline.valid_sku
    if source == RunSource.API:
        items = feed_json_items(payload=payload)
        skus = list({sku for item in items if type(item) is dict and valid_sku(sku := item.get("sku"))})
    else:
        items = None
        skus = list({sku for row in feed_csv_rows(payload=payload) if valid_sku(sku := row.get("sku"))})
        payload.seek(0)
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
    with engine.binary_cursor() as cursor:
        cursor.execute(
            engine.CONTEXT_SQL,
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
        prediction, ctx.predictor = oos_predictor(version=model_version)
    if not has_stage:
        # The temp table lives as long as the database session: created once per connection.
        with connection.cursor() as cursor:
            engine.stage_table_create(cursor)
    del skus

    rows_iter = items if items is not None else feed_csv_rows(payload=payload)
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
    writer = engine.BatchWriter(run_id, token, store_id)
    pending = engine.Pending(first_batch=batches_done)
    last_commit = time.monotonic()
    try:
        for chunk in _batches(rows_iter, batch_size):
            pending.add(pipeline.process_batch(chunk, ctx), by_reason)
            if len(pending.rows) >= batch_size or time.monotonic() - last_commit >= engine.HEARTBEAT_S:
                writer.submit(pending, by_reason)
                pending = engine.Pending(first_batch=pending.first_batch + pending.batches)
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


def ingestion_run_busy_retry(*, run_id: int, seen_heartbeat: str | None = None) -> tuple[float, str] | None:
    """When a message for a run that another worker holds should look again: (seconds until the
    run's heartbeat turns stale, that heartbeat), or None when the message is not needed any more.

    Such a message is redelivered after its worker died (the heartbeat stops: it claims as soon
    as the heartbeat is stale, not a fixed while later), or is a duplicate sent while the run was
    waiting in the broker. `seen_heartbeat` is the heartbeat the message saw last time: moved on
    since, a live worker holds the run, and the beat job covers that worker dying later.
    """
    run = IngestionRun.objects.filter(pk=run_id).values("status", "heartbeat_at").first()
    if run is None or run["status"] not in (RunStatus.QUEUED, RunStatus.RUNNING):
        return None
    heartbeat = run["heartbeat_at"].isoformat()
    if run["status"] == RunStatus.QUEUED:
        return 0.0, heartbeat  # put back in the queue meanwhile: claimable now
    if seen_heartbeat is not None and seen_heartbeat != heartbeat:
        return None
    # The claim's own rule (ingestion_run_process): stale once older than stale_after_s.
    age = (timezone.now() - run["heartbeat_at"]).total_seconds()
    return max(0.0, conf.stale_after_s() - age) + 1.0, heartbeat


def ingestion_runs_requeue_stale(*, stale_after_s: float | None = None, limit: int = 100) -> list[int]:
    """Beat job: re-queue runs whose worker stopped heartbeating, or whose message never reached
    the broker (a feed accepted while it was down): a queued run's heartbeat is its submission."""
    cutoff = timezone.now() - timedelta(
        seconds=conf.stale_after_s() if stale_after_s is None else stale_after_s
    )
    requeued: list[int] = []
    unfinished = [RunStatus.QUEUED, RunStatus.RUNNING]
    # Only the head of each store's line: a run behind an unfinished one is handed on when that
    # one ends, however long it has been waiting.
    older_unfinished = IngestionRun.objects.filter(
        store_id=OuterRef("store_id"), id__lt=OuterRef("id"), status__in=unfinished
    )
    with transaction.atomic():
        runs = list(
            IngestionRun.objects.select_for_update(skip_locked=True)
            .filter(status__in=unfinished, heartbeat_at__lt=cutoff)
            .filter(~Exists(older_unfinished))
            .order_by("id")
            .only("id", "store_id", "attempts", "max_attempts")[:limit]
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
            ingestion_run_schedule(run_id=run_id)
        # A run given up on frees its store: hand the store's next run on.
        given_up = [run.store_id for run in runs if run.status == RunStatus.FAILED]
        if given_up:
            next_runs = (
                IngestionRun.objects.filter(store_id__in=given_up, status=RunStatus.QUEUED)
                .order_by("store_id", "id")
                .distinct("store_id")
                .values_list("id", flat=True)
            )
            for run_id in next_runs:
                ingestion_run_schedule(run_id=run_id)
    return requeued


def ingestion_run_requeue(*, run: IngestionRun) -> None:
    """Ops action: give a failed run another round of attempts.

    The round resumes after the run's last committed batch. If the lake export already wrote the
    run, the round takes a new position in the stream so that its rows are exported too, once.
    """
    with transaction.atomic():
        failed = (
            IngestionRun.objects.select_for_update()
            .filter(pk=run.pk, status=RunStatus.FAILED)
            .only("id", "lake_position")
            .first()
        )
        if failed is None:
            raise ApplicationError("Only failed runs can be re-queued.")
        now = timezone.now()
        fields = {
            "status": RunStatus.QUEUED, "attempts": 0, "finished_at": None, "heartbeat_at": now, "error": ""
        }
        position = outcomes_round_position(run=failed)
        if position is not None:
            fields.update(lake_position=position, round_started_at=now)
        IngestionRun.objects.filter(pk=run.pk).update(**fields)
        ingestion_run_schedule(run_id=run.pk)
