"""Overall status rules, the rollout gate, the status API and /metrics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission

from apps.health.models import HealthCheck
from apps.health.selectors import (
    STALE_AFTER_INTERVALS,
    health_system_status,
    overall_status,
    system_status,
)
from apps.health.services import health_spec_run
from tests.factories.accounts import UserFactory
from tests.factories.health import HealthSpecFactory, check_doc

CLOSED_PORT = {"host": "127.0.0.1", "port": 1}
PORT = check_doc("port", "tcp", params=CLOSED_PORT)


@pytest.mark.parametrize(("statuses", "expected"), [
    ([], "pending"),
    (["", ""], "pending"),
    (["success", ""], "success"),
    (["success", "success"], "success"),
    (["success", "failure"], "failure"),
    (["", "error"], "failure"),
    (["timeout", "success"], "failure"),
])
def test_overall_status_rules(statuses, expected):
    assert overall_status(statuses) == expected


@pytest.mark.parametrize(("statuses", "expected"), [
    ([], "pending"), (["pending"], "pending"), (["pending", "success"], "success"),
    (["success", "failure", "pending"], "failure"),
])
def test_system_rollup(statuses, expected):
    assert system_status(statuses) == expected


@pytest.fixture
def viewer(db):
    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(codename="view_healthspec"))
    return user


@pytest.mark.django_db
def test_gate_answers_200_only_on_success(api_client, viewer):
    api_client.force_authenticate(viewer)
    spec = HealthSpecFactory(name="web", checks=[check_doc("db"), PORT])
    pending = api_client.get("/api/v1/health/gate/", {"spec": "web"})
    assert pending.status_code == 503 and pending.json()["status"] == "pending"
    health_spec_run(spec_id=spec.id)
    failed = api_client.get("/api/v1/health/gate/", {"spec": "web"})
    assert failed.status_code == 503 and failed["Retry-After"] == "10"
    body = failed.json()
    assert body["status"] == "failure"
    assert [c["name"] for c in body["failing"]] == ["port"]
    assert "cannot connect" in body["failing"][0]["message"]

    HealthCheck.objects.filter(name="port").delete()
    ok = api_client.get("/api/v1/health/gate/", {"spec": "web"})
    assert ok.status_code == 200 and ok.json() == {"spec": "web", "status": "success", "failing": []}


@pytest.mark.django_db
def test_gate_refuses_stale_results(api_client, viewer):
    api_client.force_authenticate(viewer)
    spec = HealthSpecFactory(name="web", checks=[check_doc("db"), check_doc("db2", "database")])
    health_spec_run(spec_id=spec.id)
    assert api_client.get("/api/v1/health/gate/", {"spec": "web"}).status_code == 200

    # The runner stopped (or the spec was disabled): db2's last success is old news.
    db2 = HealthCheck.objects.get(name="db2")
    db2.last_run_at -= timedelta(seconds=STALE_AFTER_INTERVALS * db2.interval_s + db2.timeout_s + 1)
    db2.save(update_fields=["last_run_at"])
    stale = api_client.get("/api/v1/health/gate/", {"spec": "web"})
    assert stale.status_code == 503
    body = stale.json()
    assert body["status"] == "stale"
    assert [(c["name"], c["status"]) for c in body["failing"]] == [("db2", "stale")]
    assert "s old" in body["failing"][0]["message"]

    health_spec_run(spec_id=spec.id)  # fresh results again
    assert api_client.get("/api/v1/health/gate/", {"spec": "web"}).status_code == 200


@pytest.mark.django_db
def test_gate_unknown_spec_and_missing_parameter(api_client, viewer):
    api_client.force_authenticate(viewer)
    assert api_client.get("/api/v1/health/gate/", {"spec": "nope"}).status_code == 404
    missing = api_client.get("/api/v1/health/gate/")
    assert missing.status_code == 400 and "spec" in missing.json()["errors"]


@pytest.mark.django_db
def test_gate_access_token_or_permission(api_client, settings):
    HealthSpecFactory(name="web")
    url = "/api/v1/health/gate/?spec=web"
    assert api_client.get(url).status_code in (401, 403)
    api_client.force_authenticate(UserFactory())  # signed in, but without the permission
    assert api_client.get(url).status_code == 403
    api_client.force_authenticate(None)

    settings.HEALTH_GATE_TOKEN = "s3cret"
    assert api_client.get(url, HTTP_AUTHORIZATION="Bearer wrong").status_code in (401, 403)
    assert api_client.get(url, HTTP_AUTHORIZATION="Bearer s3cret").status_code == 503  # pending


@pytest.mark.django_db
def test_status_endpoint_rolls_up_enabled_specs(api_client, viewer):
    api_client.force_authenticate(viewer)
    good = HealthSpecFactory(name="good", checks=[check_doc("db")])
    bad = HealthSpecFactory(name="bad", checks=[check_doc("port", "tcp", params=CLOSED_PORT)], enabled=False)
    health_spec_run(spec_id=good.id)
    health_spec_run(spec_id=bad.id)
    body = api_client.get("/api/v1/health/status/").json()
    # The disabled spec fails, but only enabled specs count towards the system status.
    assert body == {"status": "success", "specs": {"bad": "failure", "good": "success"}}
    assert health_system_status() == "success"


@pytest.mark.django_db
def test_metrics_exposes_check_spec_and_system_gauges(client):
    spec = HealthSpecFactory(name="web", checks=[check_doc("db"), PORT])
    HealthSpecFactory(name="idle")
    health_spec_run(spec_id=spec.id)
    response = client.get("/metrics")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    assert 'casehub_health_check_status{check="db",spec="web",status="success",type="database"} 1.0' in text
    assert 'casehub_health_check_status{check="db",spec="web",status="failure",type="database"} 0.0' in text
    assert 'casehub_health_check_status{check="port",spec="web",status="failure",type="tcp"} 1.0' in text
    assert 'casehub_health_check_duration_seconds{check="db",spec="web",type="database"}' in text
    assert 'casehub_health_spec_status{spec="web",status="failure"} 1.0' in text
    assert 'casehub_health_spec_status{spec="idle",status="pending"} 1.0' in text
    assert 'casehub_health_system_status{status="failure"} 1.0' in text


@pytest.mark.django_db
def test_metrics_exports_the_celery_queue_backlog(client):
    import redis
    from django.conf import settings

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete("ingestion")
    broker.rpush("ingestion", "a", "b", "c")  # stand-ins: no worker runs in this test
    try:
        text = client.get("/metrics").content.decode()
    finally:
        broker.delete("ingestion")
        broker.close()
    assert 'casehub_celery_queue_backlog{queue="ingestion"} 3.0' in text


@pytest.mark.django_db
def test_status_and_gate_query_counts_are_pinned(api_client, viewer, django_assert_num_queries):
    api_client.force_authenticate(viewer)
    for i in range(5):
        spec = HealthSpecFactory(name=f"s{i}", checks=[check_doc("db"), PORT])
        health_spec_run(spec_id=spec.id)
    viewer.has_perm("health.view_healthspec")  # warm the permission cache of this user object
    with django_assert_num_queries(1):
        assert api_client.get("/api/v1/health/status/").status_code == 200
    with django_assert_num_queries(3):
        assert api_client.get("/api/v1/health/gate/", {"spec": "s1"}).status_code == 503


@pytest.mark.django_db
def test_metrics_token_when_configured(client, settings):
    settings.METRICS_TOKEN = "scrape-me"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer nope").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me").status_code == 200
