"""Start real Celery workers and beat for integration tests, against the test database."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TypeVar

from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)
T = TypeVar("T")


def worker_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CASEHUB_DB_NAME"] = connection.settings_dict["NAME"]  # the test database
    env["CASEHUB_EMBEDDED_QUIET"] = "1"
    env.update(extra)
    return env


@contextlib.contextmanager
def celery_worker(queues: list[str] | None = None, *, concurrency: int = 2, pool: str = "prefork",
                  ready_timeout: float = 60.0, extra_args: list[str] | None = None):
    """A real `celery worker` subprocess; yields (process, node name) once it answers pings."""
    from config.celery import app

    queues = queues or settings.CELERY_QUEUES_ALL
    node = f"test-{uuid.uuid4().hex[:8]}@localhost"
    log = open(Path(settings.STATIC_ROOT).parent / f"worker-{node.split('@')[0]}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "worker", "-n", node, "-Q", ",".join(queues),
         "-c", str(concurrency), "-P", pool, "--without-gossip", "--without-mingle",
         "--loglevel", "INFO", *(extra_args or [])],
        cwd=BASE_DIR, env=worker_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            replies = app.control.ping(destination=[node], timeout=0.5)
            if replies:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery worker did not start; see {log.name}")
        yield proc, node
    finally:
        stop_process(proc)
        log.close()


@contextlib.contextmanager
def celery_beat(*, max_interval: int = 1, ready_timeout: float = 60.0):
    """A real `celery beat` subprocess with the database scheduler (the schedules in
    django-celery-beat's tables); yields the process once it runs. `max_interval`
    bounds how long it sleeps, and so how soon it sees a schedule edited meanwhile."""
    log_path = Path(settings.STATIC_ROOT).parent / f"beat-{uuid.uuid4().hex[:8]}.log"
    log = open(log_path, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel", "DEBUG",
         "-S", "django_celery_beat.schedulers:DatabaseScheduler", "--max-interval", str(max_interval)],
        cwd=BASE_DIR, env=worker_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + ready_timeout
        while b"beat: Starting..." not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"celery beat did not start; see {log_path}")
            time.sleep(0.05)
        yield proc
    finally:
        stop_process(proc)
        log.close()


def stop_process(proc: subprocess.Popen, timeout: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@contextlib.contextmanager
def scratch_var_dir():
    """A var directory for embedded services of a test's own, outside pytest's temp root: every
    pytest session that starts on the machine resets that root to 0700, which locks the
    embedded PostgreSQL (run as its own system user under root) out of its data dir."""
    path = Path(tempfile.mkdtemp(prefix="casehub-var-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
