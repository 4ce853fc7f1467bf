"""Checks of the platform itself: Celery workers per queue, the database, Redis."""

from __future__ import annotations

from contextlib import contextmanager

import redis
from django.conf import settings
from django.db import connections, transaction

from apps.health.checks.base import Check, CheckOutcome, register


@contextmanager
def bounded_queries(alias: str, timeout_s: float):
    """A transaction whose statements the server cancels after the check's timeout: the runner stops
    waiting at the timeout anyway, and this keeps an abandoned query from running on."""
    with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = %s", [max(1, int(timeout_s * 1000))])
        yield


@register
class CeleryWorkersCheck(Check):
    """Every expected queue is consumed by at least one live worker.

    Grace: right after a worker starts (a deploy restarts them) it may answer before it
    consumes all its queues; while any live worker is younger than the check's grace period,
    a missing queue is reported inside the grace window instead of failing the spec.
    """

    type_name = "celery_workers"
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["queues"],
        "properties": {
            "queues": {"type": "array", "minItems": 1, "uniqueItems": True,
                       "items": {"type": "string", "minLength": 1}},
        },
    }

    def run(self) -> CheckOutcome:
        from config.celery import app

        reply_timeout = max(0.2, min(1.0, self.ctx.timeout_s / 3))
        inspect = app.control.inspect(timeout=reply_timeout)
        active = inspect.active_queues() or {}
        consumed: dict[str, list[str]] = {}
        for worker, queues in active.items():
            for queue in queues or []:
                consumed.setdefault(queue["name"], []).append(worker)
        expected = self.params["queues"]
        missing = [q for q in expected if not consumed.get(q)]
        workers = sorted(active)
        if not missing:
            return CheckOutcome.success(f"{len(workers)} worker(s) consume {', '.join(expected)}")
        message = f"no live worker for queue(s): {', '.join(missing)} ({len(workers)} worker(s) answered)"
        in_grace = False
        if self.ctx.grace_period_s and workers:
            stats = app.control.inspect(timeout=reply_timeout, destination=workers).stats() or {}
            young = [w for w, s in stats.items() if float(s.get("uptime", 1e9)) < self.ctx.grace_period_s]
            in_grace = bool(young)
            if in_grace:
                message += f"; worker(s) still starting: {', '.join(sorted(young))}"
        return CheckOutcome.failure(message, in_grace=in_grace)


@register
class DatabaseCheck(Check):
    type_name = "database"
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"alias": {"type": "string"}},
    }

    @classmethod
    def validate_params(cls, params):
        alias = params.get("alias", "default")
        if isinstance(alias, str) and alias not in settings.DATABASES:
            return {"alias": [f"Unknown database alias {alias!r}."]}
        return {}

    def run(self) -> CheckOutcome:
        alias = self.params.get("alias", "default")
        with bounded_queries(alias, self.ctx.timeout_s), connections[alias].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return CheckOutcome.success(f"database {alias!r} answered")


@register
class RedisCheck(Check):
    type_name = "redis"
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"url": {"type": "string", "pattern": r"^(redis|rediss|unix)://"}},
    }

    def run(self) -> CheckOutcome:
        url = self.params.get("url") or settings.REDIS_URL
        client = redis.Redis.from_url(url, socket_connect_timeout=self.ctx.timeout_s,
                                      socket_timeout=self.ctx.timeout_s)
        try:
            client.ping()
        except redis.RedisError as exc:
            return CheckOutcome.failure(f"redis unreachable: {exc}")
        finally:
            client.close()
        return CheckOutcome.success("redis answered PING")
