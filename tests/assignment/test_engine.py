"""The micro-batch engine against real PostgreSQL and Redis."""

import dataclasses
import random
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.assignment import counters, routing, selectors, services
from apps.assignment.models import Agent, AgentQueue, RosterVersion
from apps.cases.models import Case, CaseEvent, EventKind, Status
from tests.factories import AgentFactory
from tests.factories.cases import QueueFactory, make_case

pytestmark = pytest.mark.django_db


def _queue(**routing):
    return QueueFactory(config__routing=routing)


def test_assigns_waiting_case_with_events_and_decision():
    queue = _queue(offers=False)
    agent = AgentFactory(queues=[queue])
    case = make_case(queue=queue)

    result = services.assignment_batch_run()

    case.refresh_from_db()
    assert result.assigned == 1 and case.assigned_agent_id == agent.pk
    assert case.status == Status.ASSIGNED and case.assigned_weight == 1 and case.first_assigned_at
    kinds = list(CaseEvent.objects.filter(case=case).values_list("kind", flat=True))
    assert kinds == [EventKind.CREATED, EventKind.ASSIGNED, EventKind.STATUS_CHANGED]
    decision = selectors.case_routing_decision(case)
    assert decision["outcome"] == "assigned" and decision["winner"] == agent.pk
    assert decision["top"][0][0] == agent.pk and decision["strategy"] == "most_spare_capacity"
    assert counters.counters_loads() == {agent.pk: 1}
    assert not case.offers.exists()


def test_offering_queue_holds_the_case_for_the_agent_until_they_answer():
    queue = _queue(offer_timeout_seconds=30)
    agent = AgentFactory(queues=[queue], display_name="Ada")
    case = make_case(queue=queue)

    result = services.assignment_batch_run()

    case.refresh_from_db()
    assert result.assigned == result.offered == 1 and case.assigned_agent_id == agent.pk
    # Held (its weight counted against the agent), but not moved on until accepted.
    assert case.status == Status.NEW and case.assigned_weight == 1
    offer = case.offers.get()
    assert offer.state == "pending" and offer.agent_id == agent.pk
    assert timedelta(seconds=29) < offer.expires_at - offer.created_at <= timedelta(seconds=30)
    (kind, data), = (CaseEvent.objects.filter(case=case).exclude(kind=EventKind.CREATED)
                     .values_list("kind", "data"))
    assert kind == EventKind.OFFERED and data["to"] == agent.pk and data["expires_at"]
    assert selectors.case_routing_decision(case)["outcome"] == "offered"
    assert counters.counters_loads() == {agent.pk: 1}
    assert services.assignment_batch_run().claimed == 0  # held cases are not waiting


def test_waiting_case_records_why_and_is_not_claimed_again_at_once():
    queue = _queue(required_skills=["fraud"])
    AgentFactory(queues=[queue], skills=["english"])
    AgentFactory(queues=[queue], presence="offline")
    AgentFactory(queues=[queue], heartbeat_at=timezone.now() - timedelta(hours=1))
    AgentFactory()  # not in the queue
    case = make_case(queue=queue)

    assert services.assignment_batch_run().assigned == 0
    decision = selectors.case_routing_decision(case)
    assert decision["outcome"] == "waiting"
    assert decision["removed"] == {"offline": 1, "stale_heartbeat": 1, "not_in_queue": 1, "missing_skill": 1}
    assert services.assignment_batch_run().claimed == 0  # deferred until its retry time


def test_optional_skill_relaxes_after_wait():
    queue = _queue(required_skills=["english"], optional_skills=["vip"], relax_after_seconds=60)
    agent = AgentFactory(queues=[queue], skills=["english"])
    fresh = make_case(queue=queue)
    nearly = make_case(queue=queue)  # the wait is read from the creation time to the second
    old = make_case(queue=queue)
    Case.objects.filter(pk=nearly.pk).update(created_at=timezone.now() - timedelta(seconds=50))
    Case.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(seconds=120))

    services.assignment_batch_run()

    fresh.refresh_from_db(), nearly.refresh_from_db(), old.refresh_from_db()
    assert old.assigned_agent_id == agent.pk and fresh.assigned_agent_id is None
    assert nearly.assigned_agent_id is None
    assert selectors.case_routing_decision(fresh)["removed"]["missing_skill"] == 1


def test_channel_weights_fill_capacity():
    queue = _queue(channel_weights={"chat": 2, "email": 1})
    agent = AgentFactory(queues=[queue], capacity=3)
    chats = [make_case(queue=queue, channel="chat") for _ in range(2)]
    email = make_case(queue=queue, channel="email")

    services.assignment_batch_run()

    loads = {c.pk: (c.assigned_agent_id, c.assigned_weight) for c in Case.objects.all()}
    assert loads[chats[0].pk] == (agent.pk, 2)  # older first, same priority
    assert loads[chats[1].pk] == (None, 0)  # 2 + 2 > 3
    assert loads[email.pk] == (agent.pk, 1)
    assert counters.counters_loads() == {agent.pk: 3}


def test_an_agents_own_channel_weight_is_what_their_cases_take():
    queue = _queue(channel_weights={"chat": 1}, offers=False)
    trainee = AgentFactory(queues=[queue], capacity=3, channel_weights={"chat": 3})
    veteran = AgentFactory(queues=[queue], capacity=3)
    chats = [make_case(queue=queue, channel="chat") for _ in range(5)]

    result = services.assignment_batch_run()

    taken = {}
    for agent_id, weight in Case.objects.filter(pk__in=[c.pk for c in chats]).values_list(
            "assigned_agent_id", "assigned_weight"):
        taken.setdefault(agent_id, []).append(weight)
    # A chat weighs 3 for the trainee and the queue's 1 for the veteran: 1 + 3 chats, one waits.
    assert taken == {trainee.pk: [3], veteran.pk: [1, 1, 1], None: [0]} and result.assigned == 4
    assert counters.counters_loads() == {trainee.pk: 3, veteran.pk: 3}
    waiting = next(c for c in chats if Case.objects.get(pk=c.pk).assigned_agent_id is None)
    assert selectors.case_routing_decision(waiting)["removed"]["full"] == 2


def test_urgent_first_then_oldest_and_reopened_waits_too():
    queue = _queue()
    AgentFactory(queues=[queue], capacity=2)
    low = make_case(queue=queue, priority=1)
    urgent = make_case(queue=queue, priority=4)
    reopened = make_case(queue=queue, priority=2)
    Case.objects.filter(pk=reopened.pk).update(status=Status.REOPENED)

    result = services.assignment_batch_run()

    assert set(result.assignments) == {urgent.pk, reopened.pk} and low.pk not in result.assignments


def test_first_priority_agents_before_overflow_agents():
    queue = _queue()
    main = AgentFactory(queues={queue: 1}, capacity=1)
    overflow = AgentFactory(queues={queue: 2}, capacity=5)
    cases = [make_case(queue=queue) for _ in range(2)]

    result = services.assignment_batch_run()

    assert result.assignments[cases[0].pk] == main.pk
    assert result.assignments[cases[1].pk] == overflow.pk


def test_agent_works_first_priority_queue_before_others():
    primary, secondary = _queue(), _queue()
    agent = AgentFactory(queues={primary: 1, secondary: 2}, capacity=1)
    other = make_case(queue=secondary, priority=4)  # more urgent, but the agent's second queue
    own = make_case(queue=primary, priority=1)

    result = services.assignment_batch_run()

    assert result.assignments == {own.pk: agent.pk} and other.pk not in result.assignments


def test_most_spare_capacity_strategy():
    queue = _queue(strategy="most_spare_capacity")
    AgentFactory(queues=[queue], capacity=2)
    roomy = AgentFactory(queues=[queue], capacity=5)
    case = make_case(queue=queue)

    assert services.assignment_batch_run().assignments == {case.pk: roomy.pk}


def test_round_robin_by_longest_idle():
    queue = _queue(strategy="round_robin")
    now = timezone.now()
    recent = AgentFactory(queues=[queue], capacity=5, presence_changed_at=now - timedelta(minutes=1))
    idle = AgentFactory(queues=[queue], capacity=1, presence_changed_at=now - timedelta(hours=1))
    cases = [make_case(queue=queue) for _ in range(3)]

    result = services.assignment_batch_run()

    assert [result.assignments[c.pk] for c in cases] == [idle.pk, recent.pk, recent.pk]
    assert selectors.case_routing_decision(cases[0])["strategy"] == "round_robin"


def test_stale_heartbeat_agent_excluded_and_expired():
    queue = _queue()
    stale = AgentFactory(queues=[queue], heartbeat_at=timezone.now() - timedelta(minutes=10))
    fresh = AgentFactory(queues=[queue])
    case = make_case(queue=queue)

    assert services.assignment_batch_run().assignments == {case.pk: fresh.pk}
    assert services.agents_presence_expire() == 1
    stale.refresh_from_db()
    assert stale.presence == "offline" and stale.presence_changed_at > stale.heartbeat_at


def test_heartbeat_keeps_agent_routable():
    queue = _queue()
    agent = AgentFactory(queues=[queue], heartbeat_at=timezone.now() - timedelta(minutes=10))
    services.agent_heartbeat(agent=agent)
    assert services.agents_presence_expire() == 0
    case = make_case(queue=queue)
    assert services.assignment_batch_run().assignments == {case.pk: agent.pk}


def test_query_count_does_not_grow_with_batch_size(django_assert_num_queries):
    queue = _queue()
    AgentFactory(queues=[queue], capacity=50)
    AgentFactory(queues=[queue], capacity=50, skills=["x"])
    services.counters_reconcile()
    # The first batch after the agents changed also reads the roster; later ones keep it.
    for n, roster_read in ((2, 1), (20, 0), (5, 0)):
        for _ in range(n):
            make_case(queue=queue)
        # savepoint, fence, constraints checked per statement, claim (with who passed on each
        # case), configs, routable agents (with the roster version and the unroutable counts), the
        # offers, the write, release
        with django_assert_num_queries(9 + roster_read, info=n):
            result = services.assignment_batch_run()
        assert result.assigned == result.offered == n


def test_batch_counts_waiting_and_assigned_in_the_same_statements(django_assert_num_queries):
    queue = _queue(offers=False)
    AgentFactory(queues=[queue], capacity=1)
    for _ in range(5):
        make_case(queue=queue)
    services.counters_reconcile()
    with django_assert_num_queries(9):  # no offers; and the roster, read once after the agents changed
        result = services.assignment_batch_run()
    assert result.assigned == 1 and result.waiting == 4


def _roster_version():
    return RosterVersion.objects.get().version


def test_roster_version_changes_with_what_the_engine_keeps_and_only_then():
    queue, other = _queue(), _queue()
    agent = AgentFactory(queues=[queue])
    seen = {_roster_version()}

    def changed():
        version = _roster_version()
        fresh = version not in seen
        seen.add(version)
        return fresh

    services.agent_heartbeat(agent=agent)
    services.agent_presence_set(agent=agent, presence="away")
    assert not changed()
    Agent.objects.filter(pk=agent.pk).update(display_name="Renamed")
    assert not changed()
    for change in (lambda: Agent.objects.filter(pk=agent.pk).update(skills=["vip"]),
                   lambda: Agent.objects.filter(pk=agent.pk).update(capacity=9),
                   lambda: Agent.objects.filter(pk=agent.pk).update(channel_weights={"chat": 2}),
                   lambda: AgentQueue.objects.create(agent=agent, queue=other, priority=2),
                   lambda: AgentQueue.objects.filter(agent=agent, queue=other).update(priority=3),
                   lambda: AgentQueue.objects.filter(agent=agent, queue=other).delete(),
                   lambda: AgentFactory(),
                   lambda: Agent.objects.filter(pk=agent.pk).delete()):
        change()
        assert changed()


def test_engine_sees_agent_changes_at_the_next_batch():
    queue = _queue(required_skills=["de"], offers=False)
    agent = AgentFactory(capacity=1)
    first = make_case(queue=queue)

    def batch(case):
        Case.objects.filter(pk=case.pk).update(routing_retry_at=None)  # due again at once
        return services.assignment_batch_run()

    assert batch(first).assigned == 0  # the engine now keeps this roster
    assert selectors.case_routing_decision(first)["removed"]["not_in_queue"] == 1
    AgentQueue.objects.create(agent=agent, queue=queue, priority=1)
    assert batch(first).assigned == 0
    assert selectors.case_routing_decision(first)["removed"]["missing_skill"] == 1
    Agent.objects.filter(pk=agent.pk).update(skills=["de"])
    assert batch(first).assignments == {first.pk: agent.pk}

    second = make_case(queue=queue)
    assert batch(second).assigned == 0
    assert selectors.case_routing_decision(second)["removed"]["full"] == 1
    Agent.objects.filter(pk=agent.pk).update(capacity=2)
    assert batch(second).assignments == {second.pk: agent.pk}


def _ranked_by_scan(pool, *, queue_id, needed, weight, strategy, max_priority, now):
    """The rule stated plainly: every agent of the pool checked, the qualifying ones ranked."""
    removed = dict.fromkeys(routing.RULES, 0)
    eligible = []
    for c in pool:
        priority = c.queue_priority.get(queue_id)
        if priority is None or priority > max_priority:
            removed["not_in_queue"] += 1
        elif not needed <= c.skills:
            removed["missing_skill"] += 1
        elif c.spare < weight:
            removed["full"] += 1
        else:
            eligible.append(c)
    eligible.sort(key=lambda c: routing.rank_key(c, strategy, now))
    return removed, [(c.agent_id, routing.score(c, strategy, now)) for c in eligible[:routing.TOP_CANDIDATES]]


@pytest.mark.parametrize("seed", range(6))
def test_indexed_pools_choose_like_a_full_scan(seed):
    rng = random.Random(seed)
    now = 1_000_000.0
    agents = [routing.Candidate(
        agent_id=n, skills=frozenset(rng.sample(["en", "fr", "vip"], rng.randint(0, 3))),
        capacity=rng.randint(0, 4), load=rng.randint(0, 2), idle_since=now - rng.choice([0, 5, 60, 61.5]),
        queue_priority={q: rng.randint(1, 2) for q in rng.sample([1, 2, 3], rng.randint(0, 2))})
        for n in range(40)]
    twins = {a.agent_id: dataclasses.replace(a, queue_priority=dict(a.queue_priority)) for a in agents}
    pools = routing.Pools(agents, removed_before={"offline": 2}, now=now)
    for _ in range(300):
        ask = {"queue_id": rng.choice([1, 2, 3, 4]),
               "needed": frozenset(rng.sample(["en", "vip"], rng.randint(0, 2))),
               "weight": rng.choice([1, 1, 2]), "strategy": rng.choice(routing.STRATEGIES),
               "max_priority": rng.choice([1, 2])}
        choice = pools.choose(**ask)
        # The engine hands the scan only the agents of the case's queue: the rest count as not in it.
        pool = [a for a in twins.values() if ask["queue_id"] in a.queue_priority]
        removed, top = _ranked_by_scan(pool, now=now, **ask)
        removed["not_in_queue"] += len(twins) - len(pool)
        assert choice.removed == {**removed, "offline": 2} and choice.top == top
        if choice.winner is not None:
            assert choice.winner.agent_id == top[0][0]
            pools.take(choice.winner, ask["weight"])
            twins[top[0][0]].load += ask["weight"]
            twins[top[0][0]].idle_since = now


def test_assignment_events_and_waiting_retry_written_by_the_one_statement():
    queue = _queue(channel_weights={"chat": 2}, offers=False)
    agent = AgentFactory(queues=[queue], capacity=2, display_name="Ada")
    chat = make_case(queue=queue, channel="chat")
    email = make_case(queue=queue, channel="email")

    result = services.assignment_batch_run()

    assert result.assignments == {chat.pk: agent.pk} and result.waiting == 1
    events = list(CaseEvent.objects.filter(case=chat).exclude(kind=EventKind.CREATED)
                  .values_list("kind", "data"))
    assert events == [(EventKind.ASSIGNED, {"from": None, "to": agent.pk, "agent": "Ada", "by": "engine"}),
                      (EventKind.STATUS_CHANGED, {"from": "new", "to": "assigned"})]
    email.refresh_from_db()
    assert email.assigned_agent_id is None and email.status == Status.NEW
    assert email.routing_retry_at > timezone.now() and email.routing_decision["outcome"] == "waiting"
    assert email.routing_decision["removed"] == {"full": 1}
    assert not CaseEvent.objects.filter(case=email).exclude(kind=EventKind.CREATED).exists()


def test_set_assignment_takes_the_feed_fence_itself(transactional_db):
    from django.db import connection, transaction

    from apps.cases import services as case_services
    from apps.core.feed import feed_lock_key

    queue = _queue()
    agent = AgentFactory(queues=[queue])
    case = make_case(queue=queue)

    def fence_held():
        with connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock'"
                           " AND pid = pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint) = %s",
                           [feed_lock_key(CaseEvent)])
            return cursor.fetchone()[0] == 1

    config = queue.configs.get(is_active=True)
    with transaction.atomic():  # a transaction of its own: the factories' writes took the fence in theirs
        assert not fence_held()
        done = case_services.cases_assign_many(
            assignments=[case_services.BulkAssignment(case_id=case.pk, queue_id=queue.pk, status=case.status,
                                                      agent_id=agent.pk, weight=1)],
            decisions={case.pk: {"outcome": "assigned"}}, configs={queue.pk: config})
        assert done == [case.pk] and fence_held()
    assert CaseEvent.objects.filter(case=case, kind=EventKind.ASSIGNED).count() == 1


def test_the_api_answers_why_a_case_is_still_waiting(api_client):
    from tests.factories.accounts import UserFactory

    queue = _queue(required_skills=["fraud"])
    AgentFactory(queues=[queue], skills=["english"])
    case = make_case(queue=queue)
    api_client.force_authenticate(UserFactory(roles=["agent"]))
    assert api_client.get(f"/api/v1/cases/{case.pk}/").json()["routing_decision"] is None

    services.assignment_batch_run()
    decision = api_client.get(f"/api/v1/cases/{case.pk}/").json()["routing_decision"]
    assert decision["outcome"] == "waiting" and decision["removed"] == {"missing_skill": 1}


def test_worker_process_reads_roster_at_start_so_its_first_batch_does_not(django_assert_num_queries):
    from celery.signals import worker_process_init

    from apps.assignment import apps as assignment_apps

    queue = _queue()
    AgentFactory(queues=[queue])
    make_case(queue=queue)
    services.counters_reconcile()
    # As a started worker: its process-start receiver is connected, and each new process runs it.
    assignment_apps._on_worker_init()
    try:
        worker_process_init.send(sender=None)
    finally:
        worker_process_init.disconnect(dispatch_uid="assignment.worker_warm")
    with django_assert_num_queries(9):  # as any batch after the first: no roster read
        assert services.assignment_batch_run().assigned == 1

