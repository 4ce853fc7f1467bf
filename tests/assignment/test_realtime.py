"""The workspace's live state: rebuilt from PostgreSQL after commit by every write that changes
it, versioned in Redis, pushed through the channel layer, and read by the short poll without
touching PostgreSQL (token, ETag, per-agent rate limit)."""

from __future__ import annotations

import json

import pytest
from django.db.backends.signals import connection_created
from django.test import Client

from apps.assignment import realtime, services, tasks
from apps.assignment.models import Offer
from apps.assignment.services.engine import PUBLISH_TASK
from apps.cases import services as case_services
from tests.factories import AgentFactory
from tests.factories.cases import QueueFactory, make_case

STATE_URL = "/api/v1/agent/state/"


@pytest.fixture(autouse=True)
def _realtime_scripts():
    realtime._client.cache_clear()
    realtime._scripts.cache_clear()
    yield


@pytest.mark.django_db
def test_an_engine_offer_is_published_after_commit_and_accepting_moves_it_to_the_cases(
        django_capture_on_commit_callbacks):
    queue = QueueFactory(config__routing={"offer_timeout_seconds": 600})
    agent = AgentFactory(queues=[queue], display_name="Ann <b>")
    case = make_case(queue=queue, subject="Parcel <script>")
    services.counters_reconcile()
    with django_capture_on_commit_callbacks() as after_commit:
        services.assignment_batch_run()
    # The batch leaves the fan-out to a worker: its one task, for the agents it gave cases to.
    assert not realtime._client().exists(realtime.STATE.format(agent.pk))
    sends = [c for c in after_commit if getattr(c, "args", None) and c.args[0].name == PUBLISH_TASK]
    assert [c.args[1] for c in sends] == [[agent.pk]]
    tasks.agent_states_publish([agent.pk])
    state = realtime.agent_state(agent.pk)
    offer = Offer.objects.get(case=case)
    assert [(o["id"], o["case"], o["subject"]) for o in state["offers"]] == [
        (offer.pk, str(case.pk), "Parcel <script>")]
    assert state["cases"] == [] and state["agent"]["name"] == "Ann <b>"

    with django_capture_on_commit_callbacks(execute=True):
        services.offer_accept(offer_id=offer.pk, user=agent.user)
    after = realtime.agent_state(agent.pk)
    assert after["version"] == state["version"] + 1
    assert after["offers"] == [] and [c["id"] for c in after["cases"]] == [str(case.pk)]


@pytest.mark.django_db
def test_a_republish_that_changed_nothing_keeps_the_version_and_a_case_write_bumps_it(
        django_capture_on_commit_callbacks):
    queue = QueueFactory()
    agent = AgentFactory(queues=[queue])
    first = realtime.agent_state_publish([agent.pk])[agent.pk]
    assert realtime.agent_state_publish([agent.pk])[agent.pk]["version"] == first["version"]
    case = make_case(queue=queue, subject="By hand")
    # The cases app announces the change by signal; the assignment app republishes.
    with django_capture_on_commit_callbacks(execute=True):
        case_services.case_assign(case=case, agent=agent)
    state = realtime.agent_state(agent.pk)
    assert state["version"] == first["version"] + 1 and [c["subject"] for c in state["cases"]] == ["By hand"]
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_presence_set(agent=agent, presence="away")
    assert realtime.agent_state(agent.pk)["agent"]["presence"] == "away"


def _stored_state(agent_id: int, body: dict) -> int:
    changed, version = realtime._scripts()["store"](keys=[realtime.STATE.format(agent_id)],
                                                    args=[json.dumps(body, sort_keys=True)])
    return int(version)


def test_a_poll_answers_304_by_etag_without_touching_postgresql(settings):
    # No django_db mark: any database access in here fails the test, and a new connection is seen.
    settings.WORKSPACE_POLL_RATE_PER_SECOND = 100
    opened = []
    connection_created.connect(lambda **kw: opened.append(kw), weak=False, dispatch_uid="poll-test")
    try:
        agent_id = 987_654
        realtime._client().delete(realtime.STATE.format(agent_id))
        version = _stored_state(agent_id, {"agent": {"id": agent_id, "name": "A", "presence": "available"},
                                           "offers": [], "cases": []})
        token = realtime.poll_token_mint(user_id=1, agent_id=agent_id)
        client = Client()
        first = client.get(STATE_URL, HTTP_X_POLL_TOKEN=token)
        assert first.status_code == 200 and first["ETag"] == f'"{version}"'
        assert first.json()["version"] == version
        again = client.get(STATE_URL, HTTP_X_POLL_TOKEN=token, HTTP_IF_NONE_MATCH=first["ETag"])
        assert again.status_code == 304 and again["ETag"] == first["ETag"]
        newer = _stored_state(agent_id, {"agent": {"id": agent_id, "name": "A", "presence": "away"},
                                         "offers": [], "cases": []})
        changed = client.get(STATE_URL, HTTP_X_POLL_TOKEN=token, HTTP_IF_NONE_MATCH=first["ETag"])
        assert changed.status_code == 200 and changed["ETag"] == f'"{newer}"'
        assert changed.json()["agent"]["presence"] == "away"
        assert client.get(STATE_URL).status_code == 401
        assert client.get(STATE_URL, HTTP_X_POLL_TOKEN="forged").status_code == 401
    finally:
        connection_created.disconnect(dispatch_uid="poll-test")
    assert opened == []


@pytest.mark.django_db
def test_a_304_makes_zero_database_queries(django_assert_num_queries):
    agent = AgentFactory()
    state = realtime.agent_state_publish([agent.pk])[agent.pk]
    token = realtime.poll_token_mint(user_id=agent.user_id, agent_id=agent.pk)
    with django_assert_num_queries(0):
        response = Client().get(STATE_URL, HTTP_X_POLL_TOKEN=token,
                                HTTP_IF_NONE_MATCH=f'"{state["version"]}"')
    assert response.status_code == 304


@pytest.mark.django_db
def test_polls_are_rate_limited_per_agent_across_tabs(settings):
    settings.WORKSPACE_POLL_RATE_PER_SECOND = 3
    agent = AgentFactory()
    realtime.agent_state_publish([agent.pk])
    tabs = [realtime.poll_token_mint(user_id=agent.user_id, agent_id=agent.pk) for _ in range(2)]
    client = Client()
    # Four polls from two tabs within one second can straddle a second boundary only once:
    # so eight polls always exceed three in some second.
    answers = [client.get(STATE_URL, HTTP_X_POLL_TOKEN=tabs[n % 2]) for n in range(8)]
    limited = [r for r in answers if r.status_code == 429]
    assert limited and {r.status_code for r in answers} == {200, 429}
    assert all(r["Retry-After"] == "1" for r in limited)
    # Another agent has a budget of their own.
    other = AgentFactory()
    realtime.agent_state_publish([other.pk])
    token = realtime.poll_token_mint(user_id=other.user_id, agent_id=other.pk)
    assert client.get(STATE_URL, HTTP_X_POLL_TOKEN=token).status_code == 200


@pytest.mark.django_db
def test_a_screen_pop_reaches_polling_tabs_while_it_is_fresh(settings):
    settings.WORKSPACE_POLL_RATE_PER_SECOND = 100
    agent = AgentFactory()
    before = realtime.agent_state_publish([agent.pk])[agent.pk]["version"]
    token = realtime.poll_token_mint(user_id=agent.user_id, agent_id=agent.pk)
    realtime.agent_screen_pop(agent.pk, {"id": "c-1", "call_id": "call-1", "caller": "+4930"})
    outcome, _, state = realtime.state_poll(token=token, known_version=str(before))
    assert outcome == "state" and state["version"] == before + 1
    assert state["screen_pop"]["call_id"] == "call-1"
    # A republish that changed nothing keeps both the version and the pop.
    assert realtime.agent_state_publish([agent.pk])[agent.pk]["version"] == before + 1
    # Once stale, a tab opened later is not sent to an old call.
    realtime._client().hset(realtime.STATE.format(agent.pk), "pop",
                            json.dumps({"id": "c-1", "at": 0}))
    assert "screen_pop" not in realtime.state_poll(token=token, known_version="")[2]


@pytest.mark.django_db
def test_a_screen_pop_before_any_state_builds_the_state_first():
    agent = AgentFactory()
    realtime._client().delete(realtime.STATE.format(agent.pk))
    realtime.agent_screen_pop(agent.pk, {"id": "c-2", "call_id": "call-2"})
    token = realtime.poll_token_mint(user_id=agent.user_id, agent_id=agent.pk)
    assert realtime.state_poll(token=token, known_version="")[2]["screen_pop"]["id"] == "c-2"
