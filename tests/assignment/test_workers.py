"""Real Celery worker processes running batches at once on one backlog."""

import pytest
from django.db.models import Count, Sum

from apps.assignment import services
from apps.assignment.models import Agent
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
    twice = (CaseEvent.objects.filter(kind=EventKind.ASSIGNED).values("case_id").annotate(n=Count("id"))
             .filter(n__gt=1))
    assert list(twice) == []
