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


def test_each_app_registers_its_own_metrics_collector_and_demo_seeder():
    from apps.assignment import demo as assignment_demo
    from apps.assignment import metrics as assignment_metrics
    from apps.cases import demo as cases_demo
    from apps.cases import metrics as cases_metrics
    from apps.core import demo, metrics
    from apps.health import demo as health_demo
    from apps.health import metrics as health_metrics
    from apps.inventory import demo as inventory_demo
    from apps.inventory import metrics as inventory_metrics
    from apps.merchants import demo as merchants_demo

    assert metrics.collectors() == (
        cases_metrics.collect, assignment_metrics.collect, inventory_metrics.collect, health_metrics.collect,
    )
    # Each seeder runs after those whose data it relies on.
    assert [(s.app_label, s.seed) for s in demo.seeders()] == [
        ("core", demo.seed), ("assignment", assignment_demo.seed), ("merchants", merchants_demo.seed),
        ("cases", cases_demo.seed), ("inventory", inventory_demo.seed), ("hub", merchants_demo.seed_hub),
        ("health", health_demo.seed),
    ]


def test_seeders_run_after_those_they_rely_on_and_a_missing_or_circular_one_is_refused(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from apps.core import demo

    def seed(*, progress):
        return {}

    monkeypatch.setattr(demo, "_seeders", {})
    demo.register_seeder("c", seed, after=("b", "a"))
    demo.register_seeder("b", seed, after=("a",))
    demo.register_seeder("a", seed)
    demo.register_seeder("d", seed)
    assert [s.app_label for s in demo.seeders()] == ["a", "b", "c", "d"]
    demo.register_seeder("e", seed, after=("nowhere",))
    with pytest.raises(ImproperlyConfigured, match="nowhere"):
        demo.seeders()
    demo.register_seeder("e", seed, after=("f",))
    demo.register_seeder("f", seed, after=("e",))
    with pytest.raises(ImproperlyConfigured, match="cycle: e, f"):
        demo.seeders()


def test_every_mounted_url_module_serves_something():
    from django.urls import get_resolver

    included = [p for p in get_resolver().url_patterns if hasattr(p, "url_patterns")]
    assert included
    for pattern in included:
        assert pattern.url_patterns, f"{pattern.pattern} mounts no route"


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
