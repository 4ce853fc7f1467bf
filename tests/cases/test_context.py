"""The context cache against the demo outside service over real HTTP: a stale tag causes exactly one
outside fetch on the next read and none after; ops' cache-bust and refresh; an outside system that
is down or slow shows the stale copy with its age; the nightly bulk refresh writes only changes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from apps.cases.context import services
from apps.cases.context.demo_service import demo_record
from apps.cases.context.models import ContextRecord
from apps.cases.context.tasks import context_refresh_agents
from tests.cases.context_fixtures import outside_service  # noqa: F401  (the `outside` fixture)
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import QueueFactory, make_case
from tests.factories.context import ContextRecordFactory
from tests.utils.concurrency import run_at_once

pytestmark = pytest.mark.django_db
EVENTS = "/api/v1/context/events/"


def post_event(api_client, body, *, secret="test-context-secret", **headers):
    return api_client.post(EVENTS, body, format="json", HTTP_AUTHORIZATION=f"Bearer {secret}", **headers)


@pytest.fixture(autouse=True)
def _events_secret(settings):
    settings.CASEHUB_CONTEXT_EVENTS_SECRET = "test-context-secret"


def test_a_fresh_record_is_read_with_one_query_and_no_fetch(outside, django_assert_num_queries):
    first = services.context_read(type="delivery", key="D-1")
    assert first.data == demo_record("delivery", "D-1") and not first.stale and not first.refresh_failed
    assert outside.fetches() == 1
    with django_assert_num_queries(1):
        again = services.context_read(type="delivery", key="D-1")
    assert again.data == first.data and outside.fetches() == 1


def test_a_stale_tag_causes_exactly_one_fetch_on_the_next_read_and_none_after(outside, api_client):
    services.context_read(type="delivery", key="D-1")
    services.context_read(type="delivery", key="D-2")
    outside.control(change=["delivery", "D-1"])

    response = post_event(api_client, {"type": "delivery", "keys": ["D-1", "D-1", "NOT-CACHED"]})
    assert response.status_code == 202, response.content
    assert response.json() == {"type": "delivery", "keys": 2, "tagged": 1}
    assert outside.fetches() == 2  # the event fetched nothing
    assert ContextRecord.objects.get(key="D-1").stale and not ContextRecord.objects.get(key="D-2").stale

    view = services.context_read(type="delivery", key="D-1")
    assert view.data == demo_record("delivery", "D-1", version=1) and not view.stale
    assert outside.fetches() == 3
    for _ in range(3):
        assert services.context_read(type="delivery", key="D-1").data == view.data
        services.context_read(type="delivery", key="D-2")
    assert outside.fetches() == 3


def test_concurrent_reads_of_a_stale_record_fetch_it_once(outside, transactional_db):
    ContextRecordFactory(key="D-9", data={"status": "old"}, stale=True)
    outside.control(mode="slow", delay=0.3)  # the fetch is in flight while the others read

    views = run_at_once(lambda: services.context_read(type="delivery", key="D-9"), 6)

    assert outside.fetches() == 1
    fresh = [v for v in views if v.data == demo_record("delivery", "D-9")]
    served_stale = [v for v in views if v.data == {"status": "old"}]
    assert len(fresh) >= 1 and len(fresh) + len(served_stale) == 6
    assert all(v.reason == "being refreshed" for v in served_stale)
    assert not ContextRecord.objects.get(key="D-9").stale


def test_outside_down_shows_the_stale_copy_with_its_age(outside):
    an_hour_ago = timezone.now() - timedelta(hours=1)
    ContextRecordFactory(key="D-5", data={"status": "cached"}, fetched_at=an_hour_ago, stale=True)
    outside.stop()

    view = services.context_read(type="delivery", key="D-5")
    assert view.data == {"status": "cached"} and view.refresh_failed and view.stale
    assert view.age_seconds() >= 3600 and "unreachable" in view.reason
    assert ContextRecord.objects.get(key="D-5").stale  # tried again on the next read

    missing = services.context_read(type="delivery", key="NEVER-SEEN")
    assert missing.unavailable and missing.refresh_failed
    assert not ContextRecord.objects.filter(key="NEVER-SEEN").exists()


def test_outside_answering_an_error_or_too_slowly_shows_the_stale_copy(outside, settings):
    ContextRecordFactory(key="D-6", data={"status": "cached"}, stale=True)
    outside.control(mode="down")  # up, but answering 503
    view = services.context_read(type="delivery", key="D-6")
    assert view.data == {"status": "cached"} and view.reason == "answered HTTP 503"

    settings.CASEHUB_CONTEXT_READ_TIMEOUT_S = 0.1
    outside.control(mode="slow", delay=2)
    view = services.context_read(type="delivery", key="D-6")
    assert view.data == {"status": "cached"} and view.reason == "timed out"

    outside.control(mode="ok")
    view = services.context_read(type="delivery", key="D-6")
    assert view.data == demo_record("delivery", "D-6") and not view.stale and not view.refresh_failed


class TaggingClient:
    """An outside system whose record changes again while it is being fetched."""

    def fetch(self, type, key):
        services.context_mark_stale(type=type, keys=[key])  # the change event lands mid-fetch
        return {"id": key, "status": "as fetched"}

    def fetch_many(self, type, keys):
        return {}


def test_a_tag_that_lands_during_a_fetch_keeps_the_record_stale(settings):
    settings.CASEHUB_CONTEXT_CLIENT = "tests.cases.test_context.TaggingClient"
    ContextRecordFactory(key="D-7", stale=True)
    view = services.context_read(type="delivery", key="D-7")
    assert view.data == {"id": "D-7", "status": "as fetched"} and view.stale
    assert ContextRecord.objects.get(key="D-7").stale


def test_no_outside_system_configured_reads_as_unavailable(settings):
    settings.CASEHUB_CONTEXT_URL = ""
    settings.CASEHUB_CONTEXT_TYPE_URLS = {}
    view = services.context_read(type="customer", key="C-1")
    assert view.unavailable and view.reason == "no customer system is configured"


def test_a_per_type_url_wins_over_the_base_url(outside, settings):
    settings.CASEHUB_CONTEXT_URL = "http://127.0.0.1:9/nothing-here"
    settings.CASEHUB_CONTEXT_TYPE_URLS = {"merchant": f"{outside.url}/merchant"}
    assert services.context_read(type="merchant", key="M 1/x").data == demo_record("merchant", "M 1/x")


# The events endpoint -----------------------------------------------------------------------------

def test_events_refuse_a_missing_or_wrong_secret(api_client, settings):
    ContextRecordFactory(key="D-1")
    assert api_client.post(EVENTS, {"type": "delivery", "keys": ["D-1"]}, format="json").status_code == 401
    assert post_event(api_client, {"type": "delivery", "keys": ["D-1"]}, secret="nope").status_code == 401
    settings.CASEHUB_CONTEXT_EVENTS_SECRET = ""
    assert post_event(api_client, {"type": "delivery", "keys": ["D-1"]}, secret="").status_code in (401, 403)
    assert not ContextRecord.objects.get(key="D-1").stale


def test_events_refuse_a_signed_in_person(api_client):
    api_client.force_authenticate(UserFactory(roles=["ops"]))
    assert api_client.post(EVENTS, {"type": "delivery", "keys": ["D-1"]}, format="json").status_code == 403


@pytest.mark.parametrize("body", [
    {"type": "parcel", "keys": ["D-1"]}, {"type": "delivery"}, {"type": "delivery", "keys": []},
    {"type": "delivery", "keys": "D-1"}, {"type": "delivery", "keys": [1]},
    {"type": "delivery", "keys": [None]},
    {"type": "delivery", "keys": ["x" * 201]}, {"type": "delivery", "keys": ["a\x00b"]},
    ["delivery"], "delivery",
])
def test_events_refuse_bad_bodies_by_field(api_client, body):
    response = post_event(api_client, body)
    assert response.status_code == 400, response.content
    assert isinstance(response.json(), dict) and response.json()


def test_events_cap_the_keys_of_one_event(api_client, settings):
    settings.CASEHUB_CONTEXT_EVENTS_MAX_KEYS = 3
    response = post_event(api_client, {"type": "delivery", "keys": ["a", "b", "c", "d"]})
    assert response.status_code == 400 and "keys" in response.json(), response.content


def test_events_tag_a_batch_in_one_statement_and_accept_an_idempotency_key(
        api_client, django_assert_num_queries):
    for key in ("D-1", "D-2", "D-3"):
        ContextRecordFactory(key=key)
    services.context_events_user()
    with django_assert_num_queries(2):  # the account, then one UPDATE
        response = post_event(api_client, {"type": "delivery", "keys": ["D-1", "D-3"]})
    assert response.json()["tagged"] == 2
    first = post_event(api_client, {"type": "delivery", "keys": ["D-2"]}, HTTP_IDEMPOTENCY_KEY="ev-1")
    replay = post_event(api_client, {"type": "delivery", "keys": ["D-2"]}, HTTP_IDEMPOTENCY_KEY="ev-1")
    assert first.status_code == replay.status_code == 202
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.json() == first.json()
    stale = ContextRecord.objects.filter(stale=True).values_list("key", flat=True)
    assert sorted(stale) == ["D-1", "D-2", "D-3"]


# Ops: bust and refresh ---------------------------------------------------------------------------

@pytest.fixture
def ops_client():
    client = Client()
    client.force_login(UserFactory(username="ops-ctx", roles=["ops"]))
    return client


def test_ops_bust_a_whole_type_and_each_record_is_fetched_again_on_its_next_read(outside, ops_client):
    for key in ("D-1", "D-2"):
        services.context_read(type="delivery", key=key)
    services.context_read(type="customer", key="C-1")
    outside.control(change=["delivery", "D-2"])

    response = ops_client.post("/admin/context/contextrecord/bust/", {"type": "delivery"})
    assert response.status_code == 302
    assert set(ContextRecord.objects.filter(stale=True).values_list("key", flat=True)) == {"D-1", "D-2"}
    assert outside.fetches() == 2  # busting fetched nothing

    assert services.context_read(type="delivery", key="D-2").data == demo_record("delivery", "D-2", 1)
    services.context_read(type="delivery", key="D-1")
    services.context_read(type="delivery", key="D-1")
    assert outside.fetches() == 4 and outside.fetches("customer") == 1


def test_ops_refresh_selected_records_now(outside, ops_client):
    services.context_read(type="delivery", key="D-1")
    outside.control(change=["delivery", "D-1"])
    record = ContextRecord.objects.get(key="D-1")
    response = ops_client.post("/admin/context/contextrecord/", {
        "action": "refresh_now", "_selected_action": [record.pk]}, follow=True)
    assert "1 refreshed, 0 could not be refreshed" in response.content.decode()
    assert ContextRecord.objects.get(key="D-1").data == demo_record("delivery", "D-1", 1)
    assert outside.fetches() == 2


def test_agents_may_look_but_not_bust(ops_client):
    agent = Client()
    agent.force_login(AgentFactory(user=UserFactory(username="agent-ctx", roles=["agent"])).user)
    record = ContextRecordFactory(key="D-1")
    assert agent.get("/admin/context/contextrecord/").status_code == 200
    assert agent.post("/admin/context/contextrecord/bust/", {"type": "delivery"}).status_code == 403
    agent.post("/admin/context/contextrecord/", {"action": "mark_stale", "_selected_action": [record.pk]})
    assert not ContextRecord.objects.get(pk=record.pk).stale
    assert ops_client.get("/admin/context/contextrecord/bust/").status_code == 200


# Nightly bulk refresh ----------------------------------------------------------------------------

def _written(key: str):
    with connection.cursor() as cursor:  # xmin: the transaction that last wrote the row
        cursor.execute("SELECT xmin::text FROM context_contextrecord WHERE type = 'agent' AND key = %s",
                       [key])
        return cursor.fetchone()[0]


def test_the_nightly_refresh_rewrites_only_agent_records_that_changed(outside, transactional_db):
    for key in ("ann", "bob", "cid"):
        services.context_read(type="agent", key=key)
    services.context_read(type="delivery", key="D-1")
    ContextRecord.objects.filter(key="cid").update(stale=True)
    outside.control(change=["agent", "bob"])
    before = {key: _written(key) for key in ("ann", "bob", "cid")}

    counts = context_refresh_agents()

    assert counts == {"records": 3, "fetched": 3, "changed": 2, "missing": 0, "failed_batches": 0}
    after = {key: _written(key) for key in ("ann", "bob", "cid")}
    assert after["ann"] == before["ann"]  # unchanged and fresh: not written at all
    assert after["bob"] != before["bob"] and after["cid"] != before["cid"]
    assert ContextRecord.objects.get(key="bob").data == demo_record("agent", "bob", 1)
    assert not ContextRecord.objects.filter(stale=True).exists()
    assert context_refresh_agents()["changed"] == 0  # a retry writes nothing
    assert outside.fetches("delivery") == 1


def test_the_nightly_refresh_keeps_cached_copies_when_the_outside_system_is_down(outside):
    services.context_read(type="agent", key="ann")
    outside.control(mode="down")
    counts = services.context_refresh_bulk(type="agent", batch_size=1)
    assert counts["failed_batches"] == 1 and counts["changed"] == 0
    assert ContextRecord.objects.get(key="ann").data == demo_record("agent", "ann")


def test_the_nightly_refresh_is_scheduled():
    task = PeriodicTask.objects.get(task="apps.cases.context.tasks.context_refresh_agents")
    assert task.enabled and task.crontab is not None and task.crontab.hour == "3"


# The panel on the case page ----------------------------------------------------------------------

def test_the_case_page_shows_the_panel_escaped_and_renders_when_outside_is_down(outside, settings):
    queue = QueueFactory()
    agent = AgentFactory(user=UserFactory(username="sam-ctx", roles=["agent"]))
    case = make_case(queue=queue, subject="late", delivery_ref="D-1", customer_ref="C-1")
    ContextRecordFactory(type="customer", key="C-1", data={"name": "<script>alert(1)</script>"})
    client = Client()
    client.force_login(agent.user)

    page = client.get(f"/admin/cases/case/{case.pk}/change/").content.decode()
    assert 'id="casehub-context"' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page
    assert demo_record("delivery", "D-1")["courier"] in page

    ContextRecord.objects.update(stale=True, fetched_at=timezone.now() - timedelta(hours=2))
    outside.stop()
    response = client.get(f"/admin/cases/case/{case.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    age = page[page.index("Fetched"):page.index("Fetched") + 30]
    assert "Fetched 2\xa0hours ago" in page and "could not refresh" in page, age
