"""Readiness probes: can this process reach the database, Redis and a Celery worker?"""

from __future__ import annotations

from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import connection


@dataclass
class ProbeResult:
    name: str
    ok: bool
    detail: str


def probe_database() -> ProbeResult:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return ProbeResult("database", True, "ok")
    except Exception as exc:  # any driver error means "not ready"
        return ProbeResult("database", False, str(exc).strip() or exc.__class__.__name__)


def probe_redis(url: str | None = None) -> ProbeResult:
    client = redis.Redis.from_url(url or settings.REDIS_URL, socket_connect_timeout=0.5,
                                  socket_timeout=0.5)
    try:
        client.ping()
        return ProbeResult("redis", True, "ok")
    except redis.RedisError as exc:
        return ProbeResult("redis", False, str(exc))
    finally:
        client.close()


def probe_celery_workers(timeout: float | None = None) -> ProbeResult:
    from config.celery import app

    timeout = settings.READYZ_WORKER_TIMEOUT if timeout is None else timeout
    try:
        with app.connection_for_write() as conn:
            # Fail fast when the broker is down instead of retrying for minutes.
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=1)
            # limit=1: one live worker is enough, so answer as soon as it replies instead of
            # waiting out the whole timeout on every probe.
            replies = app.control.ping(timeout=timeout, connection=conn, limit=1)
    except Exception as exc:  # broker errors come from several libraries
        return ProbeResult("celery", False, f"broker unreachable: {exc}")
    if not replies:
        return ProbeResult("celery", False, "no worker answered")
    names = sorted(name for reply in replies for name in reply)
    return ProbeResult("celery", True, f"worker {', '.join(names)} answered")


def readiness() -> list[ProbeResult]:
    results = [probe_database(), probe_redis()]
    results.append(probe_celery_workers())
    return results
