"""The platform foundation against the real embedded services."""

from io import StringIO

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from apps.core.roles import ROLES


@pytest.mark.django_db
def test_all_migrations_are_applied_and_none_are_missing():
    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    assert plan == []
    # makemigrations --check exits non-zero when models and migrations disagree.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.django_db
def test_roles_exist_with_their_permissions():
    groups = {g.name: g for g in Group.objects.prefetch_related("permissions__content_type")}
    assert set(ROLES) <= set(groups)
    ops = {f"{p.content_type.app_label}.{p.codename}" for p in groups["ops"].permissions.all()}
    assert "merchants.change_merchant" in ops and "django_celery_beat.add_periodictask" in ops
    agent = {f"{p.content_type.app_label}.{p.codename}" for p in groups["agent"].permissions.all()}
    assert "merchants.view_merchant" in agent and "merchants.delete_merchant" not in agent
    assert not groups["merchant"].permissions.exists()


@pytest.mark.django_db
def test_seed_demo_twice_leaves_the_same_counts():
    from django.apps import apps

    def counts():
        return {m._meta.label: m.objects.count() for m in apps.get_models()
                if m._meta.app_label in {"auth", "cases", "assignment", "inventory", "merchants", "health"}}

    out = StringIO()
    call_command("seed_demo", no_progress=True, stdout=out)
    first = counts()
    assert first["auth.User"] > 0 and first["merchants.Merchant"] > 0 and first["assignment.Agent"] > 0
    # The printed summary counts every user, agents' and merchants' logins included.
    summary = dict(line.split() for line in out.getvalue().splitlines()[1:])
    assert int(summary["users"].replace(",", "")) == first["auth.User"]
    call_command("seed_demo", no_progress=True)
    assert counts() == first


def test_healthz_does_no_io(client):
    # No django_db mark: any database access in the view would raise here.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_openapi_schema_and_docs_are_served(admin_client):
    schema = admin_client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"openapi" in schema.content
    docs = admin_client.get("/api/docs/")
    assert docs.status_code == 200


@pytest.mark.django_db
def test_admin_frame_links_follow_the_role(client):
    from tests.factories.accounts import UserFactory

    assert client.get("/").url == "/admin/"
    client.force_login(UserFactory(roles=["agent"]))
    tools = client.get("/admin/").content.decode()
    assert 'href="/api/docs/"' in tools
    assert "/admin/health/healthspec/dashboard/" not in tools  # agents hold no health permission
    assert "View site" not in tools  # there is no public site to view
    client.force_login(UserFactory(roles=["ops"]))
    assert "/admin/health/healthspec/dashboard/" in client.get("/admin/").content.decode()
