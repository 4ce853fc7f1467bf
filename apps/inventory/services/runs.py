"""Ingestion runs: claim a run, process its feed batch by batch to the end (or fail it), and put
runs back in the queue: stale ones (their worker died, or their message never reached the broker)
by the beat job, failed ones by ops.

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

from django.db import connection, transaction
from django.utils import timezone

from apps.core.errors import ApplicationError
from apps.core.memory import cyclic_gc_paused
from apps.inventory import conf, pipeline
from apps.inventory.models import IngestionRun, RunSource, RunStatus
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
    finished yet), "skipped" (finished, or out of attempts) or "lost" (re-claimed meanwhile).
    """
    token = uuid.uuid4()
    stale = timezone.now() - timedelta(seconds=conf.stale_after_s())
    with connection.cursor() as cursor:
        cursor.execute(engine.CLAIM_SQL, {"token": token, "run": run_id, "stale": stale})
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
        return "retry" if row and row[0] == RunStatus.QUEUED else "failed"
    with connection.cursor() as cursor:
        cursor.execute(
            engine.FINISH_SQL, {"run": run_id, "token": token, "sla": claimed[10], "prediction": prediction}
        )
    return "succeeded"


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
        items = feed_json_items(path=payload_path)
        skus = list({sku for item in items if type(item) is dict and valid_sku(sku := item.get("sku"))})
    else:
        items = None
        skus = list({sku for row in feed_csv_rows(path=payload_path) if valid_sku(sku := row.get("sku"))})
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

    rows_iter = items if items is not None else feed_csv_rows(path=payload_path)
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
            ingestion_run_schedule(run_id=run_id)
    return requeued


def ingestion_run_requeue(*, run: IngestionRun) -> None:
    """Ops action: give a failed run another round of attempts."""
    with transaction.atomic():
        updated = IngestionRun.objects.filter(pk=run.pk, status=RunStatus.FAILED).update(
            status=RunStatus.QUEUED, attempts=0, finished_at=None, heartbeat_at=timezone.now(), error=""
        )
        if not updated:
            raise ApplicationError("Only failed runs can be re-queued.")
        ingestion_run_schedule(run_id=run.pk)
