"""A result past its stale limit shows `stale` everywhere: the rule, the gate, the status and spec
API, the admin changelist and dashboard, and /metrics; and a stale check is never rolled up as ok."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db.models import F
from django.utils import timezone

from apps.health.models import HealthCheck
from apps.health.selectors import STALE_AFTER_INTERVALS, check_status, overall_status, system_status
from apps.health.services import health_spec_run
from tests.factories.accounts import UserFactory
from tests.factories.health import HealthSpecFactory, check_doc

pytestmark = pytest.mark.django_db
CLOSED_PORT = {"host": "127.0.0.1", "port": 1}


def age(check_name: str, *, beyond_limit_s: float = 1.0) -> None:
    """Make a check's latest result older than its stale limit, as a runner that stopped would."""
    check = HealthCheck.objects.get(name=check_name)
    limit = STALE_AFTER_INTERVALS * check.interval_s + check.timeout_s
    HealthCheck.objects.filter(pk=check.pk).update(
        last_run_at=F("last_run_at") - timedelta(seconds=limit + beyond_limit_s))


@pytest.fixture
def viewer():
    user = UserFactory(is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_healthspec"))
    return user


@pytest.fixture
def web():
    """Spec "web": two database checks that pass, one of them then left to go stale."""
    spec = HealthSpecFactory(name="web", checks=[check_doc("db"), check_doc("db2")])
    health_spec_run(spec_id=spec.id)
    age("db2")
    return spec


def test_the_rule_applies_to_any_latest_result_and_not_before_the_limit():
    now = timezone.now()
    limit = timedelta(seconds=STALE_AFTER_INTERVALS * 30 + 5)
    fields = {"interval_s": 30, "timeout_s": 5, "now": now}
    assert check_status(last_status="success", last_run_at=now - limit, **fields) == "success"
    assert check_status(last_status="success", last_run_at=now - limit - timedelta(seconds=1),
                        **fields) == "stale"
    # An old failure is old news too, and so is an old result still in grace.
    assert check_status(last_status="failure", last_run_at=now - 2 * limit, **fields) == "stale"
    assert check_status(last_status="", last_run_at=now - 2 * limit, **fields) == "stale"
    assert check_status(last_status="", last_run_at=None, **fields) == "pending"


@pytest.mark.parametrize(("statuses", "expected"), [
    (["success", "stale"], "stale"),
    (["stale", "pending"], "stale"),
    (["stale", "failure"], "failure"),
    (["pending", "success"], "success"),
])
def test_stale_rolls_up_below_failure_and_above_everything_else(statuses, expected):
    assert overall_status(statuses) == expected
    assert system_status(statuses) == expected


def test_gate_lists_the_stale_check(api_client, viewer, web):
    api_client.force_authenticate(viewer)
    response = api_client.get("/api/v1/health/gate/", {"spec": "web"})
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "stale"
    assert [(c["name"], c["status"]) for c in body["failing"]] == [("db2", "stale")]


def test_status_api_shows_stale_spec_and_system(api_client, viewer, web):
    fresh = HealthSpecFactory(name="fresh", checks=[check_doc("db")])
    health_spec_run(spec_id=fresh.id)
    api_client.force_authenticate(viewer)
    body = api_client.get("/api/v1/health/status/").json()
    assert body == {"status": "stale", "specs": {"fresh": "success", "web": "stale"}}

    health_spec_run(spec_id=web.id)  # the runner is back: fresh results again
    body = api_client.get("/api/v1/health/status/").json()
    assert body == {"status": "success", "specs": {"fresh": "success", "web": "success"}}


def test_spec_api_shows_stale_checks_and_spec(api_client, viewer, web):
    viewer.user_permissions.add(Permission.objects.get(codename="view_healthspec"))
    api_client.force_authenticate(viewer)
    body = api_client.get("/api/v1/health/specs/web/").json()
    assert body["status"] == "stale"
    assert {c["name"]: c["status"] for c in body["checks"]} == {"db": "success", "db2": "stale"}


def test_a_stale_failure_is_stale_and_a_fresh_failure_still_fails_the_spec(api_client, viewer):
    spec = HealthSpecFactory(name="mixed", checks=[check_doc("db"),
                                                   check_doc("port", "tcp", params=CLOSED_PORT)])
    health_spec_run(spec_id=spec.id)
    api_client.force_authenticate(viewer)
    assert api_client.get("/api/v1/health/status/").json()["specs"] == {"mixed": "failure"}
    age("port")
    assert api_client.get("/api/v1/health/status/").json()["specs"] == {"mixed": "stale"}
    age("db")
    gate = api_client.get("/api/v1/health/gate/", {"spec": "mixed"}).json()
    assert sorted((c["name"], c["status"]) for c in gate["failing"]) == [("db", "stale"), ("port", "stale")]


def test_admin_changelist_and_dashboard_show_stale(client, viewer, web, admin_client):
    client.force_login(viewer)
    changelist = client.get("/admin/health/healthspec/").content.decode()
    assert "health-status health-stale" in changelist
    response = client.get("/admin/health/healthspec/dashboard/")
    assert response.context["system_status"] == "stale"
    html = response.content.decode()
    assert 'data-spec-status="stale"' in html
    assert 'data-check-status="stale"' in html and 'data-check-status="success"' in html
    assert "s old; the check runs every" in html

    change = admin_client.get(f"/admin/health/healthspec/{web.pk}/change/").content.decode()
    assert "<td>db2</td><td>database</td><td>30s / 5s</td><td>stale</td>" in change


def test_metrics_show_stale_check_spec_and_system(client, web):
    text = client.get("/metrics").content.decode()
    assert 'casehub_health_check_status{check="db2",spec="web",status="stale",type="database"} 1.0' in text
    assert 'casehub_health_check_status{check="db2",spec="web",status="success",type="database"} 0.0' in text
    assert 'casehub_health_check_status{check="db",spec="web",status="success",type="database"} 1.0' in text
    assert 'casehub_health_check_stale{check="db2",spec="web",type="database"} 1.0' in text
    assert 'casehub_health_check_stale{check="db",spec="web",type="database"} 0.0' in text
    assert 'casehub_health_spec_status{spec="web",status="stale"} 1.0' in text
    assert 'casehub_health_spec_status{spec="web",status="success"} 0.0' in text
    assert 'casehub_health_system_status{status="stale"} 1.0' in text
