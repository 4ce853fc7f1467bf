"""The softphone's webhook (POST /api/v1/calls/): an answered call finds or opens the caller's
case, assigns it to the agent and screen-pops it to their tabs after commit; the end goes into the
timeline; replays answer as the first time did; the secret and the body are checked at the edge."""

from __future__ import annotations

import asyncio
import json
import queue
import threading

import pytest
from channels.layers import get_channel_layer
from django.db import transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from rest_framework.test import APIClient

from apps.assignment import realtime, services
from apps.assignment.models import Call
from apps.cases import services as case_services
from apps.cases.models import Case, Channel, EventKind, Status
from apps.core.errors import InvalidInput
from tests.factories import AgentFactory
from tests.factories.cases import QueueFactory, make_case
from tests.utils.concurrency import run_at_once

URL = "/api/v1/calls/"
SECRET = "softphone-test-secret"


@pytest.fixture(autouse=True)
def _softphone(settings):
    settings.CASEHUB_SOFTPHONE_SECRET = SECRET
    settings.CASEHUB_PHONE_QUEUE = "phone"


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                 max_size=3),
                    max_leaves=6)


@pytest.fixture
def phone_queue(db):
    return QueueFactory(slug="phone")


@pytest.fixture
def softphone():
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {SECRET}")
    return client


def post(client, body, **headers):
    return client.post(URL, data=json.dumps(body), content_type="application/json", headers=headers)


def answered(agent, caller="+49 30 1234567", call_id="call-1"):
    return {"call_id": call_id, "event": "answered", "caller": caller, "agent": agent}


def notes(case) -> list[str]:
    return list(case.events.filter(kind=EventKind.NOTE).order_by("id").values_list("data__body", flat=True))


class Tab:
    """A channel in the agent's group, as an open workspace tab's consumer has: on an event loop
    of its own that keeps running, as a Pub/Sub subscription lives on its loop's connection."""

    READY = "tab.ready"

    def __init__(self, agent_id: int) -> None:
        self.layer = get_channel_layer()
        self.received: queue.Queue = queue.Queue()
        self.loop = asyncio.new_event_loop()
        # Named here: the thread starts without this context (the group name is the tenant's).
        group = realtime.agent_group(agent_id)
        ready = threading.Event()
        self.listener = self.loop.create_task(self._listen(group, ready))
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.listener,))
        self.thread.start()
        assert ready.wait(10), "the tab never joined its group"

    async def _listen(self, group: str, ready: threading.Event) -> None:
        channel = await self.layer.new_channel()
        await self.layer.group_add(group, channel)
        while not ready.is_set():  # until a message through the group proves the subscription
            await self.layer.group_send(group, {"type": self.READY})
            try:
                message = await asyncio.wait_for(self.layer.receive(channel), 0.1)
            except TimeoutError:
                continue
            if message["type"] == self.READY:
                ready.set()
        try:
            while True:
                message = await self.layer.receive(channel)
                if message["type"] != self.READY:
                    self.received.put(message)
        except asyncio.CancelledError:  # closed
            await self.layer.flush()

    def messages(self, kind: str) -> list[dict]:
        """Every message of `kind` delivered so far (collected until none came for 0.5 s)."""
        found = []
        while True:
            try:
                message = self.received.get(timeout=0.5)
            except queue.Empty:
                return found
            if message["type"] == kind:
                found.append(message)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.listener.cancel)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def open_tab():
    tabs: list[Tab] = []

    def open_(agent_id: int) -> Tab:
        tabs.append(Tab(agent_id))
        return tabs[-1]

    yield open_
    for tab in tabs:
        tab.close()


@pytest.mark.parametrize(("raw", "expected"), [
    ("+49 30 1234567", "+49301234567"),
    ("0049 (30) 123-45.67", "+49301234567"),
    ("+1/415/555/0100", "+14155550100"),
    ("", ""),
    ("   ", ""),
])
def test_caller_numbers_normalise_to_e164(raw, expected):
    assert services.phone_number_normalise(raw) == expected


@pytest.mark.parametrize("raw", ["030 1234567", "+0301234567", "+49 30 abc", "+1234", "+1234567890123456"])
def test_numbers_that_are_not_international_are_refused(raw):
    with pytest.raises(InvalidInput) as refused:
        services.phone_number_normalise(raw)
    assert "caller" in refused.value.errors


@pytest.mark.django_db
def test_answered_assigns_the_callers_newest_open_case_and_pops_it_after_commit(
        softphone, phone_queue, django_capture_on_commit_callbacks, redis_client, open_tab):
    agent = AgentFactory()
    queue = QueueFactory()
    older = make_case(queue=queue, customer_ref="+49301234567", subject="Older")
    newest = make_case(queue=queue, customer_ref="+49301234567", subject="Newest")
    closed = make_case(queue=queue, customer_ref="+49301234567", subject="Done")
    case_services.case_transition(case=closed, to_status=Status.RESOLVED)
    tab = open_tab(agent.pk)

    with django_capture_on_commit_callbacks(execute=True):
        response = post(softphone, answered(agent.user.username))
        assert tab.messages("screen.pop") == []  # not before commit

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["case"], body["agent"], body["event"], body["created_case"]) == (
        str(newest.pk), agent.pk, "answered", False)
    newest.refresh_from_db()
    older.refresh_from_db()
    assert (newest.assigned_agent_id, newest.status) == (agent.pk, Status.ASSIGNED)
    assert older.assigned_agent_id is None
    assert notes(newest) == [f"Phone call from +49301234567 answered by {agent}."]
    [pop] = tab.messages("screen.pop")
    assert pop["case"] == {"id": str(newest.pk), "subject": "Newest", "queue": queue.slug,
                           "status": Status.ASSIGNED, "priority": newest.priority, "channel": newest.channel,
                           "call_id": "call-1", "caller": "+49301234567"}


@pytest.mark.django_db
def test_a_caller_without_an_open_case_gets_a_new_phone_case(softphone, phone_queue):
    agent = AgentFactory()
    make_case(queue=QueueFactory(), customer_ref="+4940999999")  # another customer

    response = post(softphone, answered(agent.pk, caller="0049 30 1234567"))

    assert response.status_code == 200, response.json()
    assert response.json()["created_case"] is True
    case = Case.objects.get(pk=response.json()["case"])
    assert (case.queue_id, case.channel, case.customer_ref, case.assigned_agent_id, case.subject) == (
        phone_queue.pk, Channel.PHONE, "+49301234567", agent.pk, "Phone call from +49301234567")


@pytest.mark.django_db
def test_a_withheld_number_always_opens_a_new_case(softphone, phone_queue):
    agent = AgentFactory()
    make_case(queue=phone_queue, customer_ref="")
    first = post(softphone, answered(agent.pk, caller=None, call_id="a"))
    second = post(softphone, answered(agent.pk, caller="", call_id="b"))
    assert first.status_code == second.status_code == 200
    assert first.json()["created_case"] and second.json()["created_case"]
    assert first.json()["case"] != second.json()["case"]
    assert notes(Case.objects.get(pk=first.json()["case"])) == [
        f"Phone call from a withheld number answered by {agent}."]


@pytest.mark.django_db
def test_replays_answer_as_the_first_time_and_write_nothing(
        softphone, phone_queue, django_capture_on_commit_callbacks):
    agent = AgentFactory()
    with django_capture_on_commit_callbacks(execute=True):
        first = post(softphone, answered(agent.pk))
    case = Case.objects.get(pk=first.json()["case"])
    with django_capture_on_commit_callbacks() as replay_callbacks:
        again = post(softphone, answered(agent.pk))
    assert again.status_code == 200 and again.json() == first.json()
    assert replay_callbacks == []  # no second screen pop

    end = {"call_id": "call-1", "event": "ended", "caller": "+49301234567", "agent": agent.pk,
           "duration_seconds": 125}
    ended = post(softphone, end)
    assert ended.status_code == 200, ended.json()
    assert (ended.json()["event"], ended.json()["duration_seconds"], ended.json()["case"]) == (
        "ended", 125, str(case.pk))
    assert post(softphone, {**end, "duration_seconds": 999}).json() == ended.json()
    # The answer's replay still answers the answer, whatever happened since.
    assert post(softphone, answered(agent.pk)).json() == first.json()

    assert notes(case) == [f"Phone call from +49301234567 answered by {agent}.",
                           "Phone call ended after 2 min 5 s."]
    call = Call.objects.get()
    assert (call.case_id, call.duration_seconds, call.ended_at is not None) == (case.pk, 125, True)


@pytest.mark.django_db
def test_an_end_whose_answer_never_arrived_records_both_without_a_pop(
        softphone, phone_queue, django_capture_on_commit_callbacks, open_tab):
    agent = AgentFactory()
    tab = open_tab(agent.pk)
    with django_capture_on_commit_callbacks(execute=True):
        response = post(softphone, {"call_id": "lost", "event": "ended", "caller": "+4930111111",
                                    "agent": agent.user.username})
    assert response.status_code == 200, response.json()
    assert response.json()["duration_seconds"] is None
    case = Case.objects.get(pk=response.json()["case"])
    assert notes(case) == [f"Phone call from +4930111111 answered by {agent}.", "Phone call ended."]
    assert tab.messages("screen.pop") == []


@pytest.mark.django_db
def test_an_agent_at_capacity_is_refused_and_nothing_is_written(softphone, phone_queue):
    agent = AgentFactory(capacity=1)
    case_services.case_assign(case=make_case(queue=phone_queue), agent=agent)
    waiting = make_case(queue=phone_queue, customer_ref="+4930222222")

    response = post(softphone, answered(agent.pk, caller="+4930222222"))

    assert response.status_code == 409
    assert response.json()["code"] == "agent_at_capacity" and "capacity" in response.json()["detail"]
    waiting.refresh_from_db()
    assert waiting.assigned_agent_id is None and notes(waiting) == []
    assert not Call.objects.exists()


@pytest.mark.django_db
def test_the_case_already_the_agents_stays_theirs(softphone, phone_queue):
    agent = AgentFactory()
    case = make_case(queue=phone_queue, customer_ref="+4930333333")
    case_services.case_assign(case=case, agent=agent)
    response = post(softphone, answered(agent.pk, caller="+4930333333"))
    assert response.status_code == 200 and response.json()["case"] == str(case.pk)
    assert case.events.filter(kind=EventKind.ASSIGNED).count() == 1


@pytest.mark.django_db
def test_without_a_phone_queue_a_new_caller_gets_a_clear_conflict(softphone):
    agent = AgentFactory()
    response = post(softphone, answered(agent.pk))
    assert response.status_code == 409 and response.json()["code"] == "no_phone_queue"


@pytest.mark.django_db(transaction=True)
def test_a_webhook_delivered_twice_at_once_records_one_call_on_one_case(phone_queue):
    agent = AgentFactory()

    def deliver():
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {SECRET}")
        return post(client, answered(agent.pk)).json()

    answers = run_at_once(deliver, 4)
    assert all(a == answers[0] for a in answers)
    assert Call.objects.count() == 1 and Case.objects.count() == 1
    assert len(notes(Case.objects.get())) == 1


@pytest.mark.django_db
def test_an_idempotency_key_replays_the_first_answer(softphone, phone_queue):
    agent = AgentFactory()
    first = post(softphone, answered(agent.pk), **{"Idempotency-Key": "k-1"})
    again = post(softphone, answered(agent.pk), **{"Idempotency-Key": "k-1"})
    assert first.status_code == again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    reused = post(softphone, answered(agent.pk, call_id="call-2"), **{"Idempotency-Key": "k-1"})
    assert reused.status_code == 422


@pytest.mark.django_db
def test_only_the_shared_secret_gets_in(phone_queue, settings):
    agent = AgentFactory()
    body = answered(agent.pk)
    anonymous = post(APIClient(), body)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Bearer realm="softphone"'
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Bearer not-the-secret")
    assert post(wrong, body).status_code == 401
    signed_in = APIClient()
    signed_in.force_authenticate(agent.user)  # a person, even the agent, does not report calls
    assert post(signed_in, body).status_code == 403
    settings.CASEHUB_SOFTPHONE_SECRET = ""
    unconfigured = APIClient()
    unconfigured.credentials(HTTP_AUTHORIZATION="Bearer ")
    assert post(unconfigured, body).status_code in (401, 403)
    unconfigured.credentials(HTTP_AUTHORIZATION="Bearer anything")
    assert post(unconfigured, body).status_code == 403
    assert not Call.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(("change", "field"), [
    ({"call_id": ""}, "call_id"),
    ({"call_id": "has space"}, "call_id"),
    ({"call_id": "x" * 129}, "call_id"),
    ({"event": "ringing"}, "event"),
    ({"caller": "030 1234567"}, "caller"),
    ({"caller": "+49\x0030"}, "caller"),
    ({"caller": ["+4930"]}, "caller"),
    ({"agent": True}, "agent"),
    ({"agent": 0}, "agent"),
    ({"agent": 2**63}, "agent"),
    ({"agent": 1.5}, "agent"),
    ({"agent": "no such agent"}, "agent"),
    ({"agent": "nobody"}, "agent"),
    ({"agent": 999999}, "agent"),
    ({"duration_seconds": 5}, "duration_seconds"),  # an answer has no duration
    ({"event": "ended", "duration_seconds": -1}, "duration_seconds"),
    ({"event": "ended", "duration_seconds": 10**6}, "duration_seconds"),
    ({"event": "ended", "duration_seconds": "long"}, "duration_seconds"),
])
def test_bad_bodies_get_a_field_level_400(softphone, phone_queue, change, field):
    AgentFactory(user__username="ann")
    response = post(softphone, {**answered("ann"), **change})
    assert response.status_code == 400, response.json()
    body = response.json()
    assert field in body.get("errors", body), body
    assert not Call.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("body", [[], "answered", None, {}, {"call_id": "c"}])
def test_bodies_of_the_wrong_shape_get_a_400(softphone, body):
    response = softphone.post(URL, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400


@pytest.mark.django_db
def test_the_answer_is_documented_with_its_errors():
    from django.test import Client

    schema = Client().get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"][URL]["post"]
    assert {"200", "400", "401", "403", "409", "422"} <= set(operation["responses"])
    assert operation["responses"]["409"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert {"softphoneSecret": []} in operation["security"]


@pytest.mark.django_db
def test_no_body_gets_a_server_error(softphone, phone_queue):
    AgentFactory(user__username="ann")
    valid = st.fixed_dictionaries({
        "call_id": st.text(min_size=1, max_size=130) | JSON,
        "event": st.sampled_from(["answered", "ended"]) | JSON,
        "caller": st.text(max_size=45) | st.sampled_from(["+49 30 123456", ""]) | JSON,
        "agent": st.sampled_from(["ann", 1]) | st.integers() | JSON,
    }, optional={"duration_seconds": st.integers() | JSON})

    @examples(max_examples=100, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(body=valid | JSON)
    def answers_without_a_server_error(body):
        with transaction.atomic():
            response = post(softphone, body)
            transaction.set_rollback(True)
        assert response.status_code in (200, 400, 409), (body, response.content)

    answers_without_a_server_error()
