"""The specs API: list/read with status, PUT through the admission service, DELETE, permissions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from apps.health.models import CheckResult, HealthSpec
from apps.health.services import health_spec_apply, health_spec_run
from tests.factories.accounts import UserFactory
from tests.factories.health import HealthSpecFactory, check_doc

pytestmark = pytest.mark.django_db
SPECS = "/api/v1/health/specs/"


def user_with(*codenames):
    user = UserFactory()
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="health",
                                                         codename__in=codenames))
    return user


@pytest.fixture
def editor(api_client):
    user = user_with("view_healthspec", "add_healthspec", "change_healthspec", "delete_healthspec")
    api_client.force_authenticate(user)
    user.has_perm("health.view_healthspec")  # warm the permission cache before counting queries
    return user


@pytest.mark.parametrize("n", [2, 6])
def test_list_with_status_has_a_pinned_query_count(api_client, editor, django_assert_num_queries, n):
    for i in range(n):
        spec = HealthSpecFactory(name=f"s{i}", checks=[check_doc("db"), check_doc("cache", "redis")])
        if i == 0:
            health_spec_run(spec_id=spec.id)
    with django_assert_num_queries(3):  # count, specs, checks
        body = api_client.get(SPECS).json()
    assert body["count"] == n
    first = body["results"][0]
    assert first["name"] == "s0" and first["status"] == "success"
    assert {c["name"]: c["status"] for c in first["checks"]} == {"cache": "success", "db": "success"}
    assert body["results"][1]["status"] == "pending"


def test_put_creates_updates_and_validates(api_client, editor):
    text = "checks:\n  - {name: db, type: database}\n"
    created = api_client.put(f"{SPECS}core/", {"document": text}, format="json")
    assert created.status_code == 201 and created.json()["source"] == text
    assert [c["name"] for c in created.json()["checks"]] == ["db"]

    invalid = api_client.put(f"{SPECS}core/", {"document": {"checks": [
        {"name": "db", "type": "database"}, {"name": "db", "type": "tcp", "params": {"host": "h"}}]}},
        format="json")
    assert invalid.status_code == 400
    errors = invalid.json()["errors"]
    assert set(errors) == {"checks.1.name", "checks.1.params.port"}
    assert HealthSpec.objects.get(name="core").source == text  # nothing of the invalid one stored

    updated = api_client.put(f"{SPECS}core/", {"document": {"checks": [{"name": "r", "type": "redis"}]},
                                               "enabled": False}, format="json")
    assert updated.status_code == 200 and updated.json()["enabled"] is False
    assert [c["name"] for c in updated.json()["checks"]] == ["r"]
    assert api_client.get(f"{SPECS}core/").json()["source_format"] == "json"


def test_delete_removes_results(api_client, editor):
    spec = HealthSpecFactory(name="gone")
    health_spec_run(spec_id=spec.id)
    assert api_client.delete(f"{SPECS}gone/").status_code == 204
    assert not CheckResult.objects.exists()
    assert api_client.delete(f"{SPECS}gone/").status_code == 404


def test_permissions(api_client):
    HealthSpecFactory(name="core")
    assert api_client.get(SPECS).status_code in (401, 403)
    api_client.force_authenticate(user_with("view_healthspec"))
    assert api_client.get(SPECS).status_code == 200
    assert api_client.put(f"{SPECS}core/", {"document": "checks: []"}, format="json").status_code == 403
    assert api_client.delete(f"{SPECS}core/").status_code == 403


def test_folder_managed_specs_are_changed_in_their_files(api_client, editor, tmp_path):
    source = "# synced\nchecks: [{name: db, type: database}]\n"
    health_spec_apply(name="synced", document=source, managed_by=str(tmp_path))
    edited = {"checks": [{"name": "cache", "type": "redis"}]}
    response = api_client.put(f"{SPECS}synced/", {"document": edited}, format="json")
    assert response.status_code == 409 and str(tmp_path) in response.json()["detail"]
    assert api_client.delete(f"{SPECS}synced/").status_code == 409
    assert [c["name"] for c in api_client.get(f"{SPECS}synced/").json()["checks"]] == ["db"]
    # Pausing is fine (the sync leaves `enabled` alone); the file's text stays the source.
    paused = api_client.put(f"{SPECS}synced/", {"document": {"checks": [{"name": "db", "type": "database"}]},
                                                "enabled": False}, format="json")
    assert paused.status_code == 200, paused.json()
    assert paused.json()["enabled"] is False and paused.json()["source"] == source
