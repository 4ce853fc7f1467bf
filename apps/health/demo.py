"""Demo health spec "platform": database, Redis, Celery queues, the app's own /healthz, TCP to Redis.

The TCP check targets the Redis of the running stack; the embedded Redis picks a free port at
start, and `make run` seeds on every start, so re-applying the spec keeps that port current.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from apps.core.progress import Progress
from apps.health.models import CheckResult, HealthCheck, HealthSpec
from apps.health.services import health_spec_apply


def platform_document() -> dict:
    base_url = settings.CASEHUB_BASE_URL.rstrip("/")
    redis = urlsplit(settings.REDIS_URL)
    return {
        "description": "The Casehub platform itself.",
        "defaults": {"interval": 30, "timeout": 5},
        "checks": [
            {"name": "database", "type": "database"},
            {"name": "redis", "type": "redis"},
            {"name": "celery-workers", "type": "celery_workers", "grace_period": 60,
             "params": {"queues": ["default", "assignment", "ingestion", "health"]}},
            {"name": "web-healthz", "type": "http",
             "params": {"url": f"{base_url}/healthz", "expected_status": [200], "body_regex": '"ok"'}},
            {"name": "redis-tcp", "type": "tcp",
             "params": {"host": redis.hostname or "127.0.0.1", "port": redis.port or 6379}},
        ],
    }


def seed(*, progress: Progress) -> dict[str, int]:
    spec, _ = health_spec_apply(name="platform", document=platform_document())
    return {
        "health_specs": HealthSpec.objects.count(),
        "health_checks": HealthCheck.objects.count(),
        "health_results": CheckResult.objects.count(),
    }
