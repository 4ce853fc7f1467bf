"""Demo health spec "platform": database, Redis, Celery queues, the app's own /healthz, TCP to Redis.

The checks target the running stack: its /healthz at settings.CASEHUB_BASE_URL (which `make run`
sets to the host and port it serves) and its Redis (the embedded one picks a free port at start).
`make run` seeds on every start, and re-applying the spec updates whichever of them moved.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from apps.core.progress import Progress
from apps.health.models import CheckResult, HealthCheck, HealthSpec
from apps.health.services import health_spec_apply

# Where `make run` serves when nothing else is said (seeding outside it, in tests, say).
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
# A server bound to every interface is reached on loopback from this machine.
WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "[::1]"}


def reachable_base_url() -> str:
    """settings.CASEHUB_BASE_URL, as this machine reaches it."""
    url = urlsplit((settings.CASEHUB_BASE_URL or DEFAULT_BASE_URL).rstrip("/"))
    host = WILDCARD_HOSTS.get(url.hostname or "")
    if host is None:
        return url.geturl()
    return url._replace(netloc=f"{host}:{url.port}" if url.port else host).geturl()


def platform_document() -> dict:
    base_url = reachable_base_url()
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
