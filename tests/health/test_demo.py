"""The demo spec "platform" is seeded idempotently."""

import pytest

from apps.core.progress import SILENT
from apps.health import demo
from apps.health.models import HealthSpec


@pytest.mark.django_db
def test_demo_seeds_the_platform_spec_idempotently(settings):
    settings.CASEHUB_BASE_URL = "http://app.internal:8080/"
    first = demo.seed(progress=SILENT)
    second = demo.seed(progress=SILENT)
    assert first == second and first["health_specs"] == 1
    spec = HealthSpec.objects.get(name="platform")
    checks = {c.name: c for c in spec.checks.all()}
    assert {c.type for c in checks.values()} == {"database", "redis", "celery_workers", "http", "tcp"}
    assert checks["web-healthz"].params["url"] == "http://app.internal:8080/healthz"
    assert checks["celery-workers"].params["queues"] == ["default", "assignment", "ingestion", "health"]
