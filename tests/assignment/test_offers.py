"""Offers: accept, decline, expiry, withdrawal, the one-pending-offer rule, and pull (next case),
against real PostgreSQL and Redis."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.assignment import counters, services
from apps.assignment.models import Offer, OfferState
from apps.cases import services as case_services
from apps.cases.models import Case, CaseEvent, EventKind, Status
from apps.core.errors import Conflict, NotFound
from tests.factories import AgentFactory, UserFactory
from tests.factories.cases import QueueFactory, make_case

pytestmark = pytest.mark.django_db


def _offered(case) -> Offer:
    assert services.assignment_batch_run().offered >= 1
    return Offer.objects.get(case=case, state=OfferState.PENDING)


def _kinds(case) -> list[str]:
    return list(CaseEvent.objects.filter(case=case).order_by("id").values_list("kind", flat=True))


def _expire_now(offer: Offer) -> None:
    Offer.objects.filter(pk=offer.pk).update(created_at=timezone.now() - timedelta(seconds=61),
                                             expires_at=timezone.now() - timedelta(seconds=1))


def test_accept_moves_the_case_to_the_agent_and_settles_the_offer():
    queue = QueueFactory()
    agent = AgentFactory(queues=[queue])
    case = make_case(queue=queue)
    offer = _offered(case)

    services.offer_accept(offer_id=offer.pk, user=agent.user)

    offer.refresh_from_db()
    case.refresh_from_db()
    assert offer.state == OfferState.ACCEPTED and offer.responded_at is not None
    assert case.assigned_agent_id == agent.pk and case.status == Status.ASSIGNED
    assert _kinds(case) == [EventKind.CREATED, EventKind.OFFERED, EventKind.OFFER_ACCEPTED,
                            EventKind.STATUS_CHANGED]
    with pytest.raises(Conflict) as answered:
        services.offer_accept(offer_id=offer.pk, user=agent.user)
    assert answered.value.code == "offer_accepted"


def test_only_the_offered_agent_may_answer_and_others_see_no_offer():
    queue = QueueFactory()
    AgentFactory(queues=[queue])
    other = AgentFactory()
    case = make_case(queue=queue)
    offer = _offered(case)
    for user in (other.user, UserFactory(roles=["ops"])):
        for answer in (services.offer_accept, services.offer_decline):
            with pytest.raises(NotFound):
                answer(offer_id=offer.pk, user=user)
    with pytest.raises(NotFound):
        services.offer_accept(offer_id="1; drop table", user=other.user)
    offer.refresh_from_db()
    assert offer.state == OfferState.PENDING


def test_declined_case_waits_again_and_goes_to_someone_else_never_back(django_capture_on_commit_callbacks):
    queue = QueueFactory()
    first = AgentFactory(queues=[queue], capacity=10)
    second = AgentFactory(queues=[queue], capacity=5)  # less spare: chosen only once the first passes
    case = make_case(queue=queue)
    offer = _offered(case)
    assert offer.agent_id == first.pk

    with django_capture_on_commit_callbacks(execute=True):
        services.offer_decline(offer_id=offer.pk, user=first.user)

    case.refresh_from_db()
    assert case.assigned_agent_id is None and case.assigned_weight == 0 and case.status == Status.NEW
    assert _kinds(case)[-1] == EventKind.OFFER_DECLINED
    assert counters.counters_loads().get(first.pk, 0) == 0  # set absolute after commit
    again = _offered(case)
    assert again.agent_id == second.pk

    # The second lets it expire: with nobody left, the case waits and says why.
    _expire_now(again)
    assert services.offers_expire() == 1
    assert services.assignment_batch_run().assigned == 0
    case.refresh_from_db()
    assert case.assigned_agent_id is None
    assert case.routing_decision["outcome"] == "waiting"
    assert case.routing_decision["removed"] == {"declined": 2}


def test_expired_offer_gives_the_case_back_and_the_event_says_so():
    queue = QueueFactory(config__routing={"offer_timeout_seconds": 5})
    agent = AgentFactory(queues=[queue])
    case = make_case(queue=queue)
    offer = _offered(case)
    assert offer.expires_at - offer.created_at == timedelta(seconds=5)
    assert services.offers_expire() == 0  # not due yet

    _expire_now(offer)
    with pytest.raises(Conflict) as late:  # accepting after the deadline races the expiry: refused
        services.offer_accept(offer_id=offer.pk, user=agent.user)
    assert late.value.code == "offer_expired"
    assert services.offers_expire() == 1

    offer.refresh_from_db()
    case.refresh_from_db()
    assert offer.state == OfferState.EXPIRED and case.assigned_agent_id is None
    event = CaseEvent.objects.filter(case=case).latest("id")
    assert event.kind == EventKind.OFFER_EXPIRED
    assert event.data["from"] == agent.pk and event.data["to"] is None


def test_a_case_taken_from_the_agent_another_way_withdraws_the_offer():
    queue = QueueFactory()
    agent = AgentFactory(queues=[queue])
    other = AgentFactory()
    cases = [make_case(queue=queue) for _ in range(3)]
    assert services.assignment_batch_run().offered == 3
    offers = {o.case_id: o for o in Offer.objects.filter(agent=agent)}

    case_services.case_assign(case=cases[0], agent=other)  # reassigned by ops
    case_services.case_assign(case=cases[1], agent=None)  # unassigned
    case_services.case_transition(case=cases[2], to_status=Status.RESOLVED)  # resolved meanwhile

    states = dict(Offer.objects.filter(agent=agent).values_list("case_id", "state"))
    assert states == {c.pk: OfferState.WITHDRAWN for c in cases}
    with pytest.raises(Conflict):
        services.offer_accept(offer_id=offers[cases[0].pk].pk, user=agent.user)
    # The unassigned one is offered again (the withdrawn offer neither blocks it nor excludes the agent).
    assert services.assignment_batch_run().offered == 1
    assert Offer.objects.get(case=cases[1], state=OfferState.PENDING).agent_id == agent.pk


def test_one_pending_offer_per_case_is_a_database_rule():
    queue = QueueFactory()
    agent = AgentFactory(queues=[queue])
    case = make_case(queue=queue)
    _offered(case)
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Offer.objects.create(case=case, agent=agent, created_at=now, expires_at=now + timedelta(seconds=60))


def test_queue_that_switches_offers_off_assigns_directly():
    queue = QueueFactory(config__routing={"offers": False})
    agent = AgentFactory(queues=[queue])
    case = make_case(queue=queue)
    result = services.assignment_batch_run()
    case.refresh_from_db()
    assert result.assigned == 1 and result.offered == 0 and not Offer.objects.exists()
    assert case.assigned_agent_id == agent.pk and case.status == Status.ASSIGNED


def test_offered_case_holds_capacity_so_the_agent_is_never_over_offered():
    queue = QueueFactory(config__routing={"channel_weights": {"chat": 2}})
    agent = AgentFactory(queues=[queue], capacity=3)
    for _ in range(3):
        make_case(queue=queue, channel="chat")
    assert services.assignment_batch_run().offered == 1  # 2 units held; the next chat would make 4
    assert services.assignment_batch_run().claimed == 0  # the two others wait for their retry time
    assert counters.counters_loads() == {agent.pk: 2}


# Pull ------------------------------------------------------------------------------------------

def test_next_case_takes_the_first_priority_queue_then_urgency_then_age():
    first_q, second_q = QueueFactory(slug="pull-first"), QueueFactory(slug="pull-second")
    agent = AgentFactory(queues={first_q: 1, second_q: 2}, capacity=10)
    urgent_elsewhere = make_case(queue=second_q, priority=4)
    old = make_case(queue=first_q, priority=2)
    urgent = make_case(queue=first_q, priority=3)
    Case.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))

    picks = [services.case_next_for_agent(user=agent.user) for _ in range(3)]

    assert [c.pk for c in picks] == [urgent.pk, old.pk, urgent_elsewhere.pk]
    assert all(c.assigned_agent_id == agent.pk and c.status == Status.ASSIGNED for c in picks)
    assert picks[0].routing_decision["strategy"] == "pull" and picks[0].routing_decision["winner"] == agent.pk
    assert services.case_next_for_agent(user=agent.user) is None
    assert counters.counters_loads() == {agent.pk: 3}


def test_next_case_respects_skills_weight_and_what_the_agent_declined():
    queue = QueueFactory(config__routing={"required_skills": ["english"], "optional_skills": ["vip"],
                                          "relax_after_seconds": 600, "channel_weights": {"chat": 3}})
    agent = AgentFactory(queues=[queue], skills=["english"], capacity=2)
    too_heavy = make_case(queue=queue, channel="chat", priority=4)
    vip_fresh = make_case(queue=queue, priority=3)  # needs vip until it has waited 10 minutes
    declined = make_case(queue=queue, priority=2)
    Offer.objects.create(case=declined, agent=agent, state=OfferState.DECLINED, created_at=timezone.now(),
                         expires_at=timezone.now() + timedelta(seconds=1), responded_at=timezone.now())
    plain = make_case(queue=queue, priority=1)
    Case.objects.filter(pk=plain.pk).update(created_at=timezone.now() - timedelta(hours=1))

    assert services.case_next_for_agent(user=agent.user).pk == plain.pk
    Case.objects.filter(pk=vip_fresh.pk).update(created_at=timezone.now() - timedelta(minutes=11))
    assert services.case_next_for_agent(user=agent.user).pk == vip_fresh.pk
    assert services.case_next_for_agent(user=agent.user) is None  # full: 2 of 2 units
    too_heavy.refresh_from_db()
    assert too_heavy.assigned_agent_id is None


def test_next_case_needs_an_available_agent():
    queue = QueueFactory()
    agent = AgentFactory(queues=[queue], presence="away")
    make_case(queue=queue)
    with pytest.raises(Conflict) as refused:
        services.case_next_for_agent(user=agent.user)
    assert refused.value.code == "agent_not_available"
    with pytest.raises(NotFound):
        services.case_next_for_agent(user=UserFactory(roles=["ops"]))
