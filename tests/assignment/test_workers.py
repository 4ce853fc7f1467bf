"""Real Celery worker processes running batches at once on one backlog."""

from datetime import timedelta

import pytest
from django.db.models import Count, Sum
from django.utils import timezone

from apps.assignment import services
from apps.assignment.models import Agent, Offer, OfferState
from apps.cases.models import Case, CaseEvent, EventKind
from apps.core.scheduling import task_send
from tests.factories import AgentFactory
from tests.factories.cases import QueueFactory, make_case
from tests.utils.processes import celery_worker
from tests.utils.waiting import wait_for


@pytest.mark.slow
def test_four_worker_processes_never_exceed_capacity_nor_assign_twice(transactional_db):
    queues = [QueueFactory(config__routing={"channel_weights": {"chat": 2}}) for _ in range(2)]
    agents = [AgentFactory(queues=queues if n % 2 else queues[:1], capacity=2 + n % 3) for n in range(8)]
    for n in range(60):
        make_case(queue=queues[n % 2], channel="chat" if n % 3 == 0 else "email", priority=1 + n % 4)
    services.counters_reconcile()
    capacity = sum(a.capacity for a in agents)

    def assigned_units():
        return Case.objects.aggregate(units=Sum("assigned_weight"))["units"] or 0

    def filled():
        # Full, or no agent has room for even the lightest case: ask for more batches until then.
        loads = Agent.objects.annotate(units=Sum("cases__assigned_weight"))
        spare = [a.capacity - (a.units or 0) for a in loads]
        if max(spare) == 0:
            return True
        Case.objects.filter(assigned_agent__isnull=True).update(routing_retry_at=None)
        for _ in range(4):
            task_send("apps.assignment.tasks.assignment_batch_run", 7)
        return False

    with celery_worker(["assignment"], concurrency=4):
        for _ in range(8):
            task_send("apps.assignment.tasks.assignment_batch_run", 7)
        wait_for(filled, "every agent filled to capacity", interval=0.5)

    assert assigned_units() == capacity
    loads = Agent.objects.annotate(units=Sum("cases__assigned_weight"))
    over = [a.pk for a in loads if (a.units or 0) > a.capacity]
    assert over == []
    given = CaseEvent.objects.filter(kind__in=(EventKind.ASSIGNED, EventKind.OFFERED))
    assert given.count() == Case.objects.filter(assigned_agent__isnull=False).count() > 0
    twice = given.values("case_id").annotate(n=Count("id")).filter(n__gt=1)
    assert list(twice) == []


@pytest.mark.slow
def test_an_arriving_case_is_offered_at_once_and_an_expired_offer_goes_to_another_agent(transactional_db):
    queue = QueueFactory(config__routing={"offer_timeout_seconds": 5})
    first = AgentFactory(queues=[queue], capacity=10)
    second = AgentFactory(queues=[queue], capacity=5)  # less spare: second choice
    services.counters_reconcile()

    def pending(**agent):
        return Offer.objects.filter(state=OfferState.PENDING, **agent).select_related("case").first()

    # No beat runs here: only the arrival itself can ask for the batch that offers the case.
    with celery_worker(["assignment"], concurrency=1):
        case = make_case(queue=queue)
        offer = wait_for(lambda: pending(case=case), "the new case offered on arrival", timeout=60)
        assert offer.agent_id == first.pk
        # The agent stays silent; the deadline is moved into the past rather than waited out.
        past = timezone.now() - timedelta(seconds=1)
        Offer.objects.filter(pk=offer.pk).update(created_at=past - timedelta(seconds=5), expires_at=past)
        task_send("apps.assignment.tasks.offers_expire")
        again = wait_for(lambda: pending(case=case, agent=second), "the case offered to the other agent",
                         timeout=60)

    offer.refresh_from_db()
    assert offer.state == OfferState.EXPIRED and again.case.assigned_agent_id == second.pk
    kinds = list(CaseEvent.objects.filter(case=case).exclude(kind=EventKind.CREATED)
                 .order_by("id").values_list("kind", flat=True))
    assert kinds == [EventKind.OFFERED, EventKind.OFFER_EXPIRED, EventKind.OFFERED]
