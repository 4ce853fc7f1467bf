"""Admin: spec editing through the admission service, the changelist, and the health dashboard."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse

from apps.health import services
from apps.health.models import CheckResult, HealthCheck, HealthSpec
from apps.health.services import health_spec_run
from tests.factories.accounts import UserFactory
from tests.factories.health import HealthSpecFactory, check_doc

pytestmark = pytest.mark.django_db
ADD_URL = "/admin/health/healthspec/add/"
DASHBOARD_URL = "/admin/health/healthspec/dashboard/"
CLOSED_PORT = {"host": "127.0.0.1", "port": 1}


def test_admin_add_shows_field_level_errors_and_saves_nothing(admin_client):
    source = "checks:\n  - {name: web, type: http, params: {url: 'nope', body_regex: '('}}\n"
    response = admin_client.post(ADD_URL, {"name": "web", "source": source, "enabled": "on"})
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(m.startswith("checks.0.params.url:") for m in errors["source"])
    assert any(m.startswith("checks.0.params.body_regex:") for m in errors["source"])
    assert not HealthSpec.objects.exists()


def test_admin_add_and_edit_go_through_the_service(admin_client):
    source = "checks:\n  - {name: db, type: database}\n  - {name: cache, type: redis}\n"
    response = admin_client.post(ADD_URL, {"name": "core", "source": source, "enabled": "on"})
    assert response.status_code == 302, response.context and response.context["adminform"].form.errors
    spec = HealthSpec.objects.get(name="core")
    assert sorted(spec.checks.values_list("name", flat=True)) == ["cache", "db"]
    health_spec_run(spec_id=spec.id)

    change_url = f"/admin/health/healthspec/{spec.pk}/change/"
    assert admin_client.get(change_url).status_code == 200
    edited = "checks:\n  - {name: db, type: database}\n"
    response = admin_client.post(change_url, {"source": edited, "enabled": "on"})
    assert response.status_code == 302
    assert list(spec.checks.values_list("name", flat=True)) == ["db"]
    assert CheckResult.objects.count() == 1  # the removed check's result went with it


def test_admin_refuses_to_edit_or_delete_a_folder_managed_spec(admin_client, tmp_path):
    source = "checks:\n  - {name: db, type: database}\n"
    spec, _ = services.health_spec_apply(name="synced", document=source, managed_by=str(tmp_path))
    change_url = f"/admin/health/healthspec/{spec.pk}/change/"
    edited = "checks:\n  - {name: cache, type: redis}\n"
    response = admin_client.post(change_url, {"source": edited, "enabled": "on"})
    assert response.status_code == 200
    assert str(tmp_path) in response.context["adminform"].form.errors["source"][0]
    assert list(spec.checks.values_list("name", flat=True)) == ["db"]
    # Pausing it is fine: the sync leaves `enabled` alone.
    assert admin_client.post(change_url, {"source": source}).status_code == 302
    spec.refresh_from_db()
    assert not spec.enabled
    delete_url = f"/admin/health/healthspec/{spec.pk}/delete/"
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    # A bulk delete that includes it deletes nothing.
    other = HealthSpecFactory(checks=[check_doc("db")])
    response = admin_client.post("/admin/health/healthspec/", {
        "action": "delete_selected", "_selected_action": [spec.pk, other.pk], "post": "yes"})
    assert response.status_code == 403
    assert HealthSpec.objects.filter(pk__in=[spec.pk, other.pk]).count() == 2


def test_admin_delete_removes_checks_and_results(admin_client):
    spec = HealthSpecFactory(checks=[check_doc("db")])
    health_spec_run(spec_id=spec.id)
    response = admin_client.post(f"/admin/health/healthspec/{spec.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not HealthCheck.objects.exists() and not CheckResult.objects.exists()


def test_admin_actions_run_now_and_bulk_delete(admin_client, django_capture_on_commit_callbacks):
    specs = [HealthSpecFactory(checks=[check_doc("db")]) for _ in range(2)]
    changelist = "/admin/health/healthspec/"
    ids = [str(s.pk) for s in specs]
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(changelist, {"action": "run_now", "_selected_action": ids})
    assert response.status_code == 302 and len(callbacks) == 1  # enqueued only once committed
    health_spec_run(spec_id=specs[0].id)
    response = admin_client.post(changelist, {"action": "delete_selected", "_selected_action": ids,
                                              "post": "yes"})
    assert response.status_code == 302
    assert not HealthSpec.objects.exists() and not CheckResult.objects.exists()


def _specs(n: int) -> None:
    for i in range(n):
        spec = HealthSpecFactory(checks=[check_doc("db"), check_doc("port", "tcp", params=CLOSED_PORT)])
        if i % 2:
            health_spec_run(spec_id=spec.id)


@pytest.mark.parametrize("n", [2, 8])
def test_changelist_query_count_is_pinned(admin_client, django_assert_num_queries, n):
    _specs(n)
    with django_assert_num_queries(5):
        response = admin_client.get("/admin/health/healthspec/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count("health-status health-failure") == n // 2
    assert html.count("health-status health-pending") == n - n // 2
    assert DASHBOARD_URL in html


@pytest.mark.parametrize("n", [2, 8])
def test_dashboard_query_count_is_pinned(admin_client, django_assert_num_queries, n):
    _specs(n)
    with django_assert_num_queries(5):
        response = admin_client.get(DASHBOARD_URL)
    assert response.status_code == 200
    assert response.context["system_status"] == "failure"
    assert len(response.context["specs"]) == n


def test_dashboard_shows_results_trend_and_refreshes(admin_client):
    spec = HealthSpecFactory(name="platform", checks=[check_doc("db"),
                                                      check_doc("port", "tcp", params=CLOSED_PORT)])
    for _ in range(3):
        health_spec_run(spec_id=spec.id)
    html = admin_client.get(DASHBOARD_URL).content.decode()
    assert 'data-spec-status="failure"' in html and 'data-check-status="success"' in html
    assert html.count('<span class="health-success"') == 3 and html.count('<span class="health-failure"') == 3
    assert html.count("<polyline") == 2 and "setInterval" in html
    partial = admin_client.get(DASHBOARD_URL, {"partial": "1"}).content.decode()
    assert "<html" not in partial and 'data-spec="platform"' in partial


def test_dashboard_requires_the_view_permission(client):
    user = UserFactory(is_staff=True)
    client.force_login(user)
    assert client.get(DASHBOARD_URL).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_healthspec"))
    assert client.get(DASHBOARD_URL).status_code == 200
    assert reverse("admin:health_dashboard") == DASHBOARD_URL


@pytest.mark.browser
def test_dashboard_in_a_real_browser(page, live_server, transactional_db):
    user = UserFactory(username="ops-viewer", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_healthspec"))
    spec = HealthSpecFactory(name="platform", checks=[check_doc("database"),
                                                      check_doc("port", "tcp", params=CLOSED_PORT)])
    health_spec_run(spec_id=spec.id)

    page.goto(f"{live_server.url}/admin/login/?next={DASHBOARD_URL}")
    page.fill("#id_username", "ops-viewer")
    page.fill("#id_password", "pass")
    page.click("input[type=submit]")
    page.wait_for_selector("#health-dashboard")
    assert page.inner_text("#health-system .health-status") == "failure"
    assert page.inner_text('[data-check="database"] [data-check-status]') == "success"
    assert page.inner_text('[data-check="port"] [data-check-status]') == "failure"
    assert page.locator('[data-check="port"] svg.health-spark').count() == 1

    # Auto-refresh: the port check is removed server-side; the page follows without a reload.
    HealthCheck.objects.filter(name="port").delete()
    page.wait_for_selector('[data-check="port"]', state="detached", timeout=15_000)
    assert page.inner_text('[data-spec="platform"] [data-spec-status]') == "success"
