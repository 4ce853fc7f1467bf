"""Load counters in Redis: atomic reservation, absolute updates from the change feed, rebuilds
from PostgreSQL, and the database guard that holds when Redis lies."""

import pytest
from django.db import IntegrityError, transaction

from apps.assignment import counters, services
from apps.cases import services as case_services
from apps.cases.models import Case
from apps.core.errors import Conflict
from apps.core.models import FeedCursor
from tests.factories import AgentFactory
from tests.factories.cases import QueueFactory, make_case
from tests.utils.concurrency import run_at_once

pytestmark = pytest.mark.django_db


def test_reserve_refuses_past_capacity_with_running_total():
    counters.counters_rebuild({1: 1})
    assert counters.counters_reserve([(1, 1, 3), (1, 1, 3), (1, 1, 3), (2, 2, 2), (2, 1, 2)]) == [
        True, True, False, True, False]
    assert counters.counters_loads() == {1: 3, 2: 2}


def test_reserve_waits_for_rebuild_after_flush(redis_client):
    counters.counters_rebuild({})
    redis_client.flushdb()
    assert counters.counters_reserve([(1, 1, 3)]) is None


def test_concurrent_reservations_never_exceed_capacity():
    counters.counters_rebuild({})
    results = run_at_once(lambda: counters.counters_reserve([(7, 1, 5)] * 3), 6)
    assert sum(flag for flags in results for flag in flags) == 5
    assert counters.counters_loads() == {7: 5}


def test_feed_consumer_sets_absolute_load_after_resolve_and_unassign():
    queue = QueueFactory()
    agent = AgentFactory(queues=[queue], capacity=5)
    cases = [make_case(queue=queue) for _ in range(3)]
    services.counters_reconcile()
    services.assignment_batch_run()
    counters.counters_set({agent.pk: 99})  # drift: the consumer must not add to it
    case_services.case_transition(case=cases[0], to_status="resolved")
    case_services.case_assign(case=cases[1], agent=None)

    services.counters_feed_consume()

    assert counters.counters_loads()[agent.pk] == 1


def test_reconcile_heals_after_flushdb_and_engine_rebuilds_on_its_own(redis_client):
    queue = QueueFactory()
    agent = AgentFactory(queues=[queue], capacity=2)
    make_case(queue=queue)
    services.assignment_batch_run()
    redis_client.flushdb()
    make_case(queue=queue)
    make_case(queue=queue)

    # The engine finds no counters, rebuilds them from PostgreSQL, and fills only what is free.
    assert services.assignment_batch_run().assigned == 1
    assert counters.counters_loads() == {agent.pk: 2}
    assert Case.objects.filter(assigned_agent=agent).count() == 2


def test_reconcile_heals_a_skipped_event():
    queue = QueueFactory()
    agent = AgentFactory(queues=[queue], capacity=2)
    case = make_case(queue=queue)
    services.assignment_batch_run()
    services.counters_feed_consume()
    case_services.case_transition(case=case, to_status="resolved")
    # The consumer's position jumps past the resolve: its event is never folded in.
    from django.db.models import Max

    from apps.cases.models import CaseEvent

    FeedCursor.objects.filter(name=services.COUNTERS_CONSUMER).update(
        position=CaseEvent.objects.aggregate(m=Max("id"))["m"])
    services.counters_feed_consume()
    assert counters.counters_loads()[agent.pk] == 1  # stale

    services.counters_reconcile()
    assert counters.counters_loads().get(agent.pk, 0) == 0


def test_database_refuses_assignment_over_capacity_even_if_redis_lies():
    queue = QueueFactory()
    agent = AgentFactory(queues=[queue], capacity=1)
    make_case(queue=queue)
    make_case(queue=queue)
    services.assignment_batch_run()
    counters.counters_set({agent.pk: 0})  # Redis now claims the agent is free
    Case.objects.filter(assigned_agent__isnull=True).update(routing_retry_at=None)

    with pytest.raises(IntegrityError, match="agent_capacity_exceeded"):
        services.assignment_batch_run()

    assert Case.objects.filter(assigned_agent=agent).count() == 1
    assert counters.counters_loads()[agent.pk] == 0  # the failed batch gave its reservation back


def test_manual_assign_sets_weight_and_respects_capacity():
    queue = QueueFactory(config__routing={"channel_weights": {"chat": 2}})
    agent = AgentFactory(queues=[queue], capacity=2)
    chat = make_case(queue=queue, channel="chat")
    email = make_case(queue=queue, channel="email")

    chat = case_services.case_assign(case=chat, agent=agent)
    assert chat.assigned_weight == 2
    with pytest.raises(Conflict) as refused:
        case_services.case_assign(case=email, agent=agent)
    assert refused.value.code == "agent_at_capacity" and "agent" in refused.value.errors
    email.refresh_from_db()
    assert email.assigned_agent_id is None

    unassigned = case_services.case_assign(case=chat, agent=None)
    assert unassigned.assigned_weight == 0
    assert case_services.case_assign(case=email, agent=agent).assigned_agent_id == agent.pk


def test_concurrent_manual_assigns_cannot_both_take_the_last_unit(transactional_db):
    queue = QueueFactory()
    agent = AgentFactory(queues=[queue], capacity=1)
    cases = [make_case(queue=queue) for _ in range(4)]
    pending = list(cases)

    def assign():
        case = pending.pop()
        try:
            with transaction.atomic():
                case_services.case_assign(case=case, agent=agent)
            return True
        except Conflict:
            return False

    assert sorted(run_at_once(assign, 4)) == [False, False, False, True]
    assert Case.objects.filter(assigned_agent=agent).count() == 1


def test_cases_created_in_bulk_with_an_agent_take_their_weight_and_respect_capacity():
    queue = QueueFactory(config__routing={"channel_weights": {"chat": 2}})
    agent = AgentFactory(queues=[queue], capacity=3)
    [chat] = case_services.cases_bulk_create(cases=[Case(queue=queue, channel="chat", assigned_agent=agent)])
    chat.refresh_from_db()
    assert chat.assigned_weight == 2
    with pytest.raises(IntegrityError), transaction.atomic():
        case_services.cases_bulk_create(cases=[Case(queue=queue, channel="chat", assigned_agent=agent)])
