"""Conventions shared by the benchmarks (see ../shared/BENCHMARKS.md).

Each benchmark runs on its own database (`casehub_bench_<name>`) on the embedded or
configured PostgreSQL, created and migrated here and dropped at the end, so it never touches
dev or test data. The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args(description: str, extra=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small workload, runs in seconds")
    parser.add_argument("--keep-db", action="store_true", help="keep the benchmark database")
    if extra:
        extra(parser)
    return parser.parse_args()


def setup(name: str) -> str:
    """Point Django at a fresh benchmark database, migrate it, and return its name."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("CASEHUB_EMBEDDED_QUIET", "1")
    db_name = f"casehub_bench_{name}"
    os.environ["CASEHUB_DB_NAME"] = "postgres"  # connect to the maintenance DB first
    import django

    django.setup()
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{db_name}"')
    connection.close()
    connection.settings_dict["NAME"] = db_name
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    return db_name


def teardown(db_name: str, keep: bool = False) -> None:
    from django.db import connection, connections

    connections.close_all()
    if keep:
        return
    connection.settings_dict["NAME"] = "postgres"
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    connections.close_all()


@contextmanager
def timer():
    result = {}
    start = time.perf_counter()
    yield result
    result["s"] = time.perf_counter() - start


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def emit(result: dict) -> None:
    """Print the benchmark's one JSON object as the last line of stdout."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=False), flush=True)


def cpu_seconds(pids) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each live process of `pids`."""
    import psutil

    seconds = {}
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        seconds[pid] = times.user + times.system
    return seconds


def postgres_pids(postmaster: int | None) -> list[int]:
    """The PostgreSQL server's processes: the postmaster and its backends and helpers."""
    import psutil

    if not postmaster:
        return []
    return [postmaster, *(child.pid for child in psutil.Process(postmaster).children())]


def settle_client_heap() -> None:
    """Call in a measuring client once its data is loaded: a full collection walking what loading
    made (millions of objects at the full shapes) would pause every client coroutine at once and
    show up as server latency."""
    import gc

    gc.collect()
    gc.freeze()
