"""Degraded, not down: /metrics answers with what it can while the database is down, and the admin
keeps working while Redis is down."""

from __future__ import annotations

import logging

import pytest
import redis
from django.conf import settings
from django.db import DatabaseError, connection
from django.test import override_settings
from prometheus_client.core import GaugeMetricFamily

from apps.core import metrics
from apps.health.services import health_spec_run
from config import embedded
from tests.factories.accounts import UserFactory
from tests.factories.cases import make_case
from tests.factories.health import HealthSpecFactory, check_doc


def up(text: str, collector: str) -> str | None:
    prefix = f'casehub_metrics_collector_up{{collector="{collector}"}} '
    return next((line.removeprefix(prefix) for line in text.splitlines() if line.startswith(prefix)), None)


# /metrics ---------------------------------------------------------------------------------------

def broker_backlog() -> GaugeMetricFamily:
    """Test collector: Redis only (the broker's queue lengths), no database."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1)
    try:
        length = client.llen("casehub-degraded-test")
    finally:
        client.close()
    return [GaugeMetricFamily("casehub_test_redis_only", "Answers without the database.", value=length)]


def half_then_database_error():
    """Test collector: yields one family, then its database goes away."""
    yield GaugeMetricFamily("casehub_test_half_written", "Never shown: its collector failed.", value=1)
    raise DatabaseError("server closed the connection unexpectedly")


@pytest.mark.django_db
def test_a_failing_collector_is_left_out_and_reported_the_others_still_answer(client, monkeypatch, caplog):
    spec = HealthSpecFactory(name="web", checks=[check_doc("db")])
    health_spec_run(spec_id=spec.id)
    monkeypatch.setitem(metrics._collectors, half_then_database_error, "flaky")
    with caplog.at_level(logging.ERROR, logger="apps.core.metrics"):
        response = client.get("/metrics")
    assert response.status_code == 200
    text = response.content.decode()
    assert up(text, "flaky") == "0.0"
    assert "casehub_test_half_written" not in text  # whole or not at all
    assert [up(text, name) for name in ("cases", "inventory", "health")] == ["1.0", "1.0", "1.0"]
    assert 'casehub_health_check_status{check="db",spec="web",status="success",type="database"} 1.0' in text
    assert 'casehub_metrics_collector_duration_seconds{collector="flaky"}' in text
    assert any("metrics collector flaky failed" in r.getMessage() and r.exc_info for r in caplog.records)


@pytest.mark.django_db(transaction=True)
def test_metrics_answer_while_the_database_is_down(client, monkeypatch, tmp_path):
    monkeypatch.setitem(metrics._collectors, broker_backlog, "broker")
    host = connection.settings_dict["HOST"]
    connection.close()
    # Where no PostgreSQL listens: every new connection is refused, as with a database that died.
    connection.settings_dict["HOST"] = str(tmp_path)
    try:
        response = client.get("/metrics")
    finally:
        connection.settings_dict["HOST"] = host
        connection.close()
    assert response.status_code == 200
    text = response.content.decode()
    assert [up(text, name) for name in ("cases", "inventory", "health")] == ["0.0", "0.0", "0.0"]
    assert up(text, "broker") == "1.0" and "casehub_test_redis_only 0.0" in text
    assert "casehub_health_check_status{" not in text
    assert connection.cursor() is not None  # and the next request finds the database again


@pytest.mark.django_db(transaction=True)  # autocommit, as in production: no test transaction to abort
def test_a_collector_query_past_the_statement_timeout_is_cancelled(client, monkeypatch):
    def slow():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(30)")
        return []

    monkeypatch.setattr(metrics, "STATEMENT_TIMEOUT_MS", 200)
    monkeypatch.setitem(metrics._collectors, slow, "slow")
    text = client.get("/metrics").content.decode()
    assert up(text, "slow") == "0.0"
    # The timeout was for the scrape only: this connection's later queries are not bound by it.
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"


# Admin while Redis is down ----------------------------------------------------------------------

ADMIN_PAGES = [
    "/admin/",
    "/admin/cases/case/",
    "/admin/health/healthspec/",
    "/admin/health/healthspec/dashboard/",
    "/admin/health/healthspec/dashboard/?partial=1",
    "/admin/health/checkresult/",
]


@pytest.mark.slow
@pytest.mark.django_db
def test_the_admin_keeps_working_while_redis_is_down(client, tmp_path):
    # A Redis of this test's own, so stopping it does not disturb the rest of the run.
    state, _ = embedded._redis_start(tmp_path)
    caches = {"default": {**settings.CACHES["default"], "LOCATION": f"redis://127.0.0.1:{state['port']}/1"}}
    make_case(subject="printer on fire")
    spec = HealthSpecFactory(name="platform", checks=[check_doc("db")])
    health_spec_run(spec_id=spec.id)
    UserFactory(username="ops-lead", password="s3cret-pass", is_staff=True, is_superuser=True)
    try:
        with override_settings(CACHES=caches):
            signed_in = client.post("/admin/login/?next=/admin/",
                                    {"username": "ops-lead", "password": "s3cret-pass", "next": "/admin/"})
            assert signed_in.status_code == 302, signed_in.content.decode()[:500]
            assert [client.get(url).status_code for url in ADMIN_PAGES] == [200] * len(ADMIN_PAGES)

            embedded._redis_stop(tmp_path)
            with pytest.raises(redis.ConnectionError):  # it is down indeed
                redis.Redis(port=state["port"], socket_connect_timeout=1).ping()
            assert [client.get(url).status_code for url in ADMIN_PAGES] == [200] * len(ADMIN_PAGES)
            assert "printer on fire" in client.get("/admin/cases/case/").content.decode()
    finally:
        embedded._redis_stop(tmp_path)
