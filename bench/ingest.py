"""Inventory ingestion benchmark: whole-store feeds through the full pipeline service.

Full: 50 stores x 10,000 items. Each feed is submitted as the API would (raw payload stored)
and processed in-process by the same service the Celery task calls (no broker hop, so the
figure is the worker's throughput). Next to it, in the same run: an unchanged re-feed of every
store, a naive per-item ORM path on a sample, and a raw COPY + INSERT ... ON CONFLICT of the
same rows with no pipeline. Statements are counted with CaptureQueriesContext (COPY included).

Then a backlog through real Celery worker processes (one ingestion process each, as separate
hosts would run): 12 feeds over 4 stores, sent at once, processed by 1 and by --workers N
processes; each count gets fresh stores and the same feeds. Items per second from the send to
the last run's finish.
"""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import subprocess
import sys
import time
import uuid

from _harness import emit, parse_args, setup, teardown

BACKLOG_STORES, BACKLOG_FEEDS = 4, 3


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], extra=lambda parser: parser.add_argument(
        "--workers", type=int, default=3, metavar="N",
        help="worker processes the backlog is also run with, next to one (0: no backlog)"))
    stores_n, items_n, naive_n = (3, 2000, 300) if args.quick else (50, 10_000, 2000)
    db_name = setup("ingest")
    try:
        result = run(stores_n, items_n, naive_n)
        if args.workers > 0:
            result.update(backlog(db_name, items_n // 2 if args.quick else items_n, args.workers))
        emit(result)
    finally:
        teardown(db_name, keep=args.keep_db)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def run(stores_n: int, items_n: int, naive_n: int) -> dict:
    from django.db import connection, reset_queries, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from apps.inventory import pipeline, services
    from apps.inventory.models import CatalogItem, IngestionRun, InventoryItem, PriceGuardrail, Store, Unit
    from apps.inventory.services import engine
    from apps.merchants.models import Merchant

    rng = random.Random(7)
    merchant = Merchant.objects.create(external_id="bench", name="Bench Grocer")
    categories = ["produce", "dairy", "bakery", "snacks", "drinks", "household"]
    catalog = []
    for n in range(items_n):
        weighted = n % 10 == 0
        catalog.append(
            CatalogItem(
                merchant=merchant,
                sku=f"SKU-{n:07d}",
                name=f"Item {n}",
                brand="Brand",
                category=categories[n % len(categories)],
                unit=Unit.KG if weighted else Unit.EACH,
                average_weight=0.5 + (n % 5) / 10 if weighted else None,
            )
        )
    CatalogItem.objects.bulk_create(catalog, batch_size=5000)
    del catalog
    PriceGuardrail.objects.create(category="household", ceiling_cents=20_000)
    stores = Store.objects.bulk_create(
        [
            Store(merchant=merchant, external_id=f"s{n}", name=f"Store {n}", price_markup_bps=150)
            for n in range(stores_n + 12)
        ]
    )
    feed_stores, raw_stores, naive_store = stores[:stores_n], stores[stores_n : stores_n + 10], stores[-1]

    items = []
    for n in range(items_n):
        item = {
            "sku": f"SKU-{n:07d}",
            "available": n % 50 != 0,
            "quantity": rng.randint(0, 40),
            "aisle": f"{n % 20}{'ABCD'[n % 4]}",
        }
        if n % 10 == 0:
            item["unit_price"] = round(rng.uniform(1, 20), 2)
        else:
            item["price"] = round(rng.uniform(0.5, 30), 2)
        if n % 997 == 0:
            del item["available"], item["quantity"]
            item["price"] = "n/a"  # a few malformed items, rejected one by one
        items.append(item)
    body = json.dumps({"items": items}).encode()
    del items

    # Tables hold statistics in production (autovacuum); give the fresh catalog its own.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        engine.stage_table_create(cursor)  # the runs' own staging table, loaded here without them
    raw_sql = """
        INSERT INTO inventory_inventoryitem AS t (store_id, sku, price_cents, is_available, display_status,
            status_reason, held_price_cents, oos_score, attributes, fingerprint, updated_run_id, updated_at)
        SELECT %s, sku, price_cents, is_available, display_status, status_reason, held_price_cents, oos_score,
            attributes, fingerprint, 0, now() FROM inventory_stage
        ON CONFLICT (store_id, sku) DO UPDATE SET price_cents = EXCLUDED.price_cents,
            is_available = EXCLUDED.is_available, display_status = EXCLUDED.display_status,
            status_reason = EXCLUDED.status_reason, held_price_cents = EXCLUDED.held_price_cents,
            oos_score = EXCLUDED.oos_score, attributes = EXCLUDED.attributes,
            fingerprint = EXCLUDED.fingerprint,
            updated_at = EXCLUDED.updated_at
    """

    def raw_load(store, rows) -> float:
        """(b) COPY + INSERT ... ON CONFLICT of the pipeline's own output rows, 1,000 per batch."""
        t0 = time.perf_counter()
        for start in range(0, len(rows), 1000):
            with transaction.atomic(), connection.cursor() as cursor:
                with cursor.copy(engine.COPY_SQL) as copy:
                    for row in rows[start : start + 1000]:
                        copy.write_row((*row, None))  # no rejection reason
                cursor.execute(raw_sql, [store.pk])
        return time.perf_counter() - t0

    # --- full pipeline, one whole-store run after another; the raw loads are interleaved with
    # it so that both sides of the ratio see the same (shared, noisy) machine.
    raw_stores = raw_stores[: max(1, min(10, stores_n))]
    raw_every = max(1, stores_n // len(raw_stores))
    rows: list[tuple] = []
    raw_s = 0.0
    raw_done = 0
    rss_by_stores: dict[str, float] = {}
    process_s = submit_s = 0.0
    statements = 0
    for n, store in enumerate(feed_stores, start=1):
        t0 = time.perf_counter()
        run_obj = services.feed_submit_json(store=store, body=body, enqueue=False)
        t1 = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            assert services.ingestion_run_process(run_id=run_obj.pk) == "succeeded"
        t2 = time.perf_counter()
        # Statements sent by the run (COPY included); BEGIN/COMMIT are transaction control.
        statements += sum(1 for q in queries if q["sql"] not in ("BEGIN", "COMMIT"))
        reset_queries()  # the debug log would otherwise keep every run's SQL text alive
        submit_s += t1 - t0
        process_s += t2 - t1
        if n in (1, 2, 5, 10, 25, 50) or n == stores_n:
            rss_by_stores[str(n)] = round(_rss_mb(), 1)
        if n == 1:
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE inventory_inventoryitem")  # what autovacuum does after a bulk load
            rows = [
                (*row[:7], json.dumps(row[7]), row[8])
                for row in InventoryItem.objects.filter(store=store)
                .order_by("sku")
                .values_list(
                    "sku",
                    "price_cents",
                    "is_available",
                    "display_status",
                    "status_reason",
                    "held_price_cents",
                    "oos_score",
                    "attributes",
                    "fingerprint",
                )
            ]
        if n % raw_every == 0 and raw_done < len(raw_stores):
            raw_s += raw_load(raw_stores[raw_done], rows)
            raw_done += 1
    raw_rows = len(rows) * raw_done
    items_total = stores_n * items_n
    first = IngestionRun.objects.filter(store__in=feed_stores).order_by("id").first()

    # --- unchanged re-feed of every store
    refeed_s = 0.0
    for store in feed_stores:
        run_obj = services.feed_submit_json(store=store, body=body, enqueue=False)
        t0 = time.perf_counter()
        services.ingestion_run_process(run_id=run_obj.pk)
        refeed_s += time.perf_counter() - t0
    last = IngestionRun.objects.order_by("-id").first()
    assert last.unchanged == last.received - last.rejected, "re-feed was not a no-op"

    # --- naive per-item ORM path on a sample: a catalog read and an update_or_create per item
    sample = json.loads(body)["items"][:naive_n]
    t0 = time.perf_counter()
    for item in sample:
        entry = CatalogItem.objects.filter(merchant=merchant, sku=item["sku"]).first()
        raw_price = item.get("price") if entry.unit == Unit.EACH else item.get("unit_price")
        try:
            price = float(raw_price)
        except (TypeError, ValueError):
            continue
        cents = round(price * 100 * (entry.average_weight or 1) * 1.015)
        InventoryItem.objects.update_or_create(
            store=naive_store,
            sku=item["sku"],
            defaults={
                "price_cents": cents,
                "is_available": item.get("available", True),
                "display_status": pipeline.SHOWN,
                "attributes": {"quantity": item.get("quantity")},
                "updated_at": timezone.now(),
            },
        )
    naive_s = time.perf_counter() - t0

    pipeline_rate = items_total / process_s
    raw_rate = raw_rows / raw_s
    rss_values = list(rss_by_stores.values())
    return {
        "items": items_total,
        "stores": stores_n,
        "items_per_store": items_n,
        "pipeline_items_per_s": round(pipeline_rate),
        "pipeline_incl_submit_items_per_s": round(items_total / (process_s + submit_s)),
        "refeed_unchanged_items_per_s": round(items_total / refeed_s),
        "naive_items_per_s": round(naive_n / naive_s),
        "naive_sample_items": naive_n,
        "raw_copy_items_per_s": round(raw_rate),
        "pipeline_over_raw_copy": round(pipeline_rate / raw_rate, 2),
        "statements_per_1000_items": round(statements / items_total * 1000, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_mb_by_stores_done": rss_by_stores,
        # Store 1 warms up (writer thread, model/catalog caches); after it RSS should stay flat.
        "rss_growth_mb_after_first_store": round(rss_values[-1] - rss_values[0], 1),
        "rss_growth_mb_after_second_store": round(
            rss_values[-1] - rss_values[min(1, len(rss_values) - 1)], 1
        ),
        "run_counts_first_store": {
            "created": first.created,
            "rejected": first.rejected,
            "held": first.held,
            "predicted_oos": first.predicted_oos,
        },
        "mode": "in-process service (what the Celery task calls), no broker",
    }


class Worker:
    """A `celery worker` process on the ingestion queue with one pool process, against the
    benchmark database; its log goes to a file under the var directory."""

    def __init__(self, db_name: str) -> None:
        from config import embedded

        self.node = f"bench-ingest-{uuid.uuid4().hex[:8]}@localhost"
        argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "-n", self.node, "-Q", "ingestion",
                "-c", "1", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        env = os.environ | {"CASEHUB_DB_NAME": db_name, "CASEHUB_EMBEDDED_QUIET": "1"}
        self.log_path = embedded.var_dir() / f"{self.node.split('@')[0]}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> None:
        from config.celery import app

        deadline = time.monotonic() + timeout
        while not app.control.ping(destination=[self.node], timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the celery worker did not start:\n{self.log_tail()}")

    def log_tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> str:
        """Stop it; its whole log."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what it started
                self.proc.wait()
        self.log.close()
        text = self.log_path.read_text(errors="replace")
        self.log_path.unlink()
        return text


def backlog(db_name: str, items_n: int, workers: int) -> dict:
    """The same backlog with 1 and `workers` worker processes."""
    import redis
    from django.conf import settings
    from django.db.models import Max, Min

    from apps.core.scheduling import task_send
    from apps.inventory import services
    from apps.inventory.models import IngestionRun, InventoryItem, RunStatus, Store
    from apps.inventory.services.scheduling import INGESTION_RUN_PROCESS
    from apps.merchants.models import Merchant

    merchant = Merchant.objects.get(external_id="bench")
    rng = random.Random(11)
    bodies = [
        json.dumps({"items": [
            {"sku": f"SKU-{n:07d}", "price": round(rng.uniform(0.5, 30), 2), "available": n % 40 != feed,
             "quantity": rng.randint(0, 40)}
            for n in range(items_n)
        ]}).encode()
        for feed in range(BACKLOG_FEEDS)
    ]
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    rates: dict[str, int] = {}
    retries: dict[str, int] = {}
    final_states = []
    for count in (1, workers):
        # Nothing left over from an earlier run or round: a stopping worker puts back the
        # messages it held for later (a duplicate looking at a busy run again), and any message,
        # even one for a finished run, makes its worker take the next runnable run: this round's
        # runs would start before the clock does.
        broker.delete("ingestion")
        stores = Store.objects.bulk_create([
            Store(merchant=merchant, external_id=f"backlog-{count}-{n}", name=f"Backlog {n}",
                  price_markup_bps=150)
            for n in range(BACKLOG_STORES)
        ])
        # Feeds of all stores interleaved, as they arrive: later feeds of a store come while its
        # earlier one runs.
        runs = [
            services.feed_submit_json(store=store, body=body, enqueue=False).pk
            for body in bodies
            for store in stores
        ]
        pool = [Worker(db_name) for _ in range(count)]
        try:
            for worker in pool:
                worker.wait_ready()
            t0 = time.time()
            for run_id in runs:
                task_send(INGESTION_RUN_PROCESS, run_id)
            pending = IngestionRun.objects.filter(pk__in=runs).exclude(status=RunStatus.SUCCEEDED)
            deadline = time.monotonic() + 1800
            while pending.exists():
                if IngestionRun.objects.filter(pk__in=runs, status=RunStatus.FAILED).exists():
                    raise RuntimeError("a backlog run failed")
                if time.monotonic() > deadline:
                    raise RuntimeError("the backlog did not finish")
                time.sleep(0.05)
            started, last = IngestionRun.objects.filter(pk__in=runs).aggregate(
                started=Min("started_at"), last=Max("finished_at")).values()
            if started.timestamp() < t0:
                raise RuntimeError("a backlog run started before its tasks were sent")
        finally:
            logs = [worker.stop() for worker in pool]
        rates[str(count)] = round(len(runs) * items_n / (last.timestamp() - t0))
        retries[str(count)] = sum(log.count(" retry: ") for log in logs)
        final_states.append([
            list(InventoryItem.objects.filter(store=store).order_by("sku")
                 .values_list("sku", "price_cents", "is_available", "display_status", "fingerprint"))
            for store in stores
        ])
    assert final_states[0] == final_states[-1], "the backlog ended differently with more workers"
    return {
        "backlog_items": BACKLOG_STORES * BACKLOG_FEEDS * items_n,
        "backlog_items_per_s_by_workers": rates,
        "backlog_task_retries_by_workers": retries,
        "backlog_mode": "real celery worker processes (-c 1 each), 12 feeds over 4 stores sent at once",
    }


if __name__ == "__main__":
    main()
