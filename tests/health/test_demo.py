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


@pytest.mark.django_db
def test_seeding_again_with_another_address_moves_the_demo_spec_there(settings):
    # `make run PORT=9000` after a run on 8000: the spec must check where the stack serves now.
    settings.CASEHUB_BASE_URL = "http://127.0.0.1:8000"
    demo.seed(progress=SILENT)
    settings.CASEHUB_BASE_URL = "http://127.0.0.1:9000"
    demo.seed(progress=SILENT)
    spec = HealthSpec.objects.get(name="platform")
    assert spec.checks.get(name="web-healthz").params["url"] == "http://127.0.0.1:9000/healthz"
    [healthz] = [c for c in spec.document["checks"] if c["name"] == "web-healthz"]
    assert healthz["params"]["url"] == "http://127.0.0.1:9000/healthz"
    assert HealthSpec.objects.count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(("base_url", "checked"), [
    ("http://0.0.0.0:9000", "http://127.0.0.1:9000/healthz"),
    ("http://[::]:9000/", "http://[::1]:9000/healthz"),
    ("https://casehub.example.com", "https://casehub.example.com/healthz"),
])
def test_a_stack_bound_to_every_interface_is_checked_on_loopback(settings, base_url, checked):
    settings.CASEHUB_BASE_URL = base_url
    demo.seed(progress=SILENT)
    assert HealthSpec.objects.get(name="platform").checks.get(name="web-healthz").params["url"] == checked
