"""Routing what-if against a hand-built hour of history: arrivals, assignments, resolutions and
presence changes written by the real services at chosen times; and the presence history itself."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.assignment.models import Agent, AgentPresenceChange, Presence
from apps.assignment.services.presence import (
    agent_presence_changes_purge,
    agent_presence_set,
    agents_presence_expire,
)
from apps.assignment.whatif import Summary, routing_what_if, wait_percentiles
from apps.cases import services as case_services
from apps.cases.models import Status
from tests.factories import AgentFactory
from tests.factories.cases import QueueFactory, make_case

pytestmark = pytest.mark.django_db

WHAT_IF_QUERIES = 5  # agents, presence at the start, presence in the window, configs, events


@contextmanager
def at(when):
    """Services stamp rows with timezone.now(): write the history at the times it is meant to have."""
    with mock.patch.object(timezone, "now", return_value=when):
        yield


@pytest.fixture
def history(settings):
    """One hour from T; batches every 2 s, a case no agent could take is looked at 4 s later
    (so every retry lands on a batch). Every case is 'web' (weight 1 in the active configs).

    Agents of queue Q: Ann (capacity 2, skill billing; also works Q2), Bob (capacity 1).
      T-600  Ann and Bob go available
      T-300  B0 created in Q2;  T-200 B0 -> Ann            (Ann carries 1 unit into the window)
      T+60   c1 created;  T+70  c1 -> Ann                  (waited 10 s)
      T+120  c2 created;  T+150 c2 -> Bob                  (waited 30 s)
      T+180  c3 created
      T+240  c4 created (never assigned)
      T+400  B0 resolved
      T+420  c3 -> Ann                                     (waited 240 s)
      T+500  Bob goes away
      T+600  c1 resolved;  T+900 c2 resolved;  T+1200 c3 resolved
    """
    settings.ASSIGNMENT_RETRY_SECONDS = 4
    t = timezone.now().replace(microsecond=0) - timedelta(hours=2)
    queue, other = QueueFactory(slug="whatif-q"), QueueFactory(slug="whatif-other")
    ann = AgentFactory(display_name="Ann", capacity=2, skills=["billing"], presence=Presence.OFFLINE,
                       queues={queue: 1, other: 1})
    bob = AgentFactory(display_name="Bob", capacity=1, presence=Presence.OFFLINE, queues={queue: 1})

    def s(seconds):
        return t + timedelta(seconds=seconds)

    with at(s(-600)):
        agent_presence_set(agent=ann, presence=Presence.AVAILABLE)
        agent_presence_set(agent=bob, presence=Presence.AVAILABLE)
    with at(s(-300)):
        b0 = make_case(queue=other)
    with at(s(-200)):
        case_services.case_assign(case=b0, agent=ann)
    cases = {}
    for name, created in (("c1", 60), ("c2", 120), ("c3", 180), ("c4", 240)):
        with at(s(created)):
            cases[name] = make_case(queue=queue)
        if name == "c1":
            with at(s(70)):
                case_services.case_assign(case=cases["c1"], agent=ann)
        if name == "c2":
            with at(s(150)):
                case_services.case_assign(case=cases["c2"], agent=bob)
    with at(s(400)):
        case_services.case_transition(case=b0, to_status=Status.RESOLVED)
    with at(s(420)):
        case_services.case_assign(case=cases["c3"], agent=ann)
    with at(s(500)):
        agent_presence_set(agent=bob, presence=Presence.AWAY)
    for name, resolved in (("c1", 600), ("c2", 900), ("c3", 1200)):
        with at(s(resolved)):
            case_services.case_transition(case=cases[name], to_status=Status.RESOLVED)
    return {"queue": queue, "now": s(3600), "cases": cases}


# What really happened, the same whatever the draft: c1, c2, c3 assigned after 10, 30 and 240 s;
# median 30, p90 the 3rd of 3 (nearest rank ceil(0.9 * 3) = 3): 240. Ann took c1 and c3, Bob c2.
ACTUAL = Summary(assigned=3, waiting_unassigned=1, median_wait_s=30.0, p90_wait_s=240.0,
                 load_by_agent={"Ann": 2, "Bob": 1})


def run(history, routing):
    return routing_what_if(queue=history["queue"], routing=routing, hours=1, now=history["now"])


def test_identical_routing_matches_the_hand_replay(history):
    result = run(history, {})
    # Most spare capacity; Ann's idle clock is B0's assignment (T-200), Bob's his presence (T-600).
    # T+60   c1: Ann and Bob both 1 spare; Bob idle longer -> Bob (0 s). Bob full.
    # T+120  c2: Ann 1 spare (B0 holds the other) -> Ann (0 s). Ann full.
    # T+180  c3, T+240 c4: everyone full -> wait for capacity; looked at again every 4 s.
    # T+400  B0 resolved, Ann 1 spare: c3 (older) -> Ann (220 s); c4 still full.
    # T+500  Bob away.   T+600 c1 resolved frees Bob, but he is away: c4 waits (Ann full).
    # T+900  c2 resolved, Ann 1 spare: c4 -> Ann (660 s).
    # Waits 0, 0, 220, 660: median (0 + 220) / 2 = 110, p90 the 4th of 4 = 660.
    assert result.cases == 4
    assert result.actual == ACTUAL
    assert result.draft == Summary(assigned=4, waiting_unassigned=0, median_wait_s=110.0, p90_wait_s=660.0,
                                   waited_for_skill=0, waited_for_capacity=2, waited_for_presence=0,
                                   load_by_agent={"Ann": 3, "Bob": 1})


def test_a_skill_no_agent_has_makes_every_case_wait_for_skill(history):
    result = run(history, {"required_skills": ["spanish"]})
    # Ann stays available all hour without the skill: every case waits for it, none is assigned.
    assert result.actual == ACTUAL
    assert result.draft == Summary(assigned=0, waiting_unassigned=4, median_wait_s=None, p90_wait_s=None,
                                   waited_for_skill=4, waited_for_capacity=0, waited_for_presence=0,
                                   load_by_agent={})


def test_heavier_cases_wait_for_capacity(history):
    result = run(history, {"channel_weights": {"web": 2}})
    # A case now takes 2 units: only Ann with nothing of the draft's can take one; B0 still
    # weighs 1 (its queue's active config).
    # T+60..240  c1-c4 arrive: Ann 1 spare, Bob 1 spare: all wait for capacity.
    # T+400  B0 resolved: c1 -> Ann (340 s).   T+600 c1 resolved: c2 -> Ann (480 s).
    # T+900  c2 resolved: c3 -> Ann (720 s).  T+1200 c3 resolved: c4 -> Ann (960 s).
    # Median (480 + 720) / 2 = 600, p90 the 4th of 4 = 960.
    assert result.draft == Summary(assigned=4, waiting_unassigned=0, median_wait_s=600.0, p90_wait_s=960.0,
                                   waited_for_skill=0, waited_for_capacity=4, waited_for_presence=0,
                                   load_by_agent={"Ann": 4})


def test_an_agents_own_channel_weight_counts_over_the_drafts(history):
    Agent.objects.filter(display_name="Bob").update(channel_weights={"web": 1})
    result = run(history, {"channel_weights": {"web": 2}})
    # The draft makes a case 2 units, but Bob's own weight keeps it at 1 for him.
    # T+60   c1: Ann 1 spare (needs 2), Bob 1 spare (needs 1) -> Bob (0 s). Bob full.
    # T+120..240  c2-c4 arrive: all wait for capacity.
    # T+400  B0 resolved, Ann 2 spare: c2 (oldest) -> Ann (280 s). T+500 Bob away.
    # T+600  c1 resolved frees Bob, but he is away.   T+900 c2 resolved: c3 -> Ann (720 s).
    # T+1200 c3 resolved: c4 -> Ann (960 s). Waits 0, 280, 720, 960: median 500, p90 960.
    assert result.draft == Summary(assigned=4, waiting_unassigned=0, median_wait_s=500.0, p90_wait_s=960.0,
                                   waited_for_skill=0, waited_for_capacity=3, waited_for_presence=0,
                                   load_by_agent={"Ann": 3, "Bob": 1})


def test_relaxed_optional_skill_lets_cases_through_later(history):
    # Nobody has the optional 'spanish': each case waits for it for 100 s (looked at every 4 s,
    # so exactly at arrival + 100), then routes on required skills alone.
    # T+160  c1 relaxed: Ann and Bob 1 spare each, Bob idle longer -> Bob (100 s).
    # T+220  c2 relaxed: Ann 1 spare -> Ann (100 s).
    # T+280  c3 and T+340 c4 relaxed: everyone full -> wait for capacity.
    # T+400  B0 resolved: c3 -> Ann (220 s).  T+900 c2 resolved (Bob away): c4 -> Ann (660 s).
    # Waits 100, 100, 220, 660: median 160, p90 660.
    result = run(history, {"optional_skills": ["spanish"], "relax_after_seconds": 100})
    assert result.draft == Summary(assigned=4, waiting_unassigned=0, median_wait_s=160.0, p90_wait_s=660.0,
                                   waited_for_skill=4, waited_for_capacity=2, waited_for_presence=0,
                                   load_by_agent={"Ann": 3, "Bob": 1})


def test_only_selects_in_a_pinned_number_of_queries(history):
    with CaptureQueriesContext(connection) as queries:
        run(history, {"channel_weights": {"web": 2}})
    sqls = [q["sql"].lstrip().upper() for q in queries.captured_queries]
    assert len(sqls) == WHAT_IF_QUERIES
    assert all(sql.startswith("SELECT") for sql in sqls), sqls

    # More cases, more agents' history: still the same reads.
    with at(history["now"] - timedelta(minutes=5)):
        for _ in range(3):
            make_case(queue=history["queue"])
    with CaptureQueriesContext(connection) as queries:
        result = run(history, {})
    assert len(queries.captured_queries) == WHAT_IF_QUERIES
    assert result.cases == 7


def test_wait_percentiles():
    assert wait_percentiles([]) == (None, None)
    assert wait_percentiles([5.0]) == (5.0, 5.0)
    # ceil(0.9 * 10) = 9th smallest.
    assert wait_percentiles([float(n) for n in range(10, 0, -1)]) == (5.5, 9.0)


# Presence history ------------------------------------------------------------------------------


def test_presence_set_records_only_changes():
    agent = AgentFactory(presence=Presence.OFFLINE)
    agent_presence_set(agent=agent, presence=Presence.AVAILABLE)
    agent_presence_set(agent=agent, presence=Presence.AVAILABLE)  # a heartbeat, not a change
    agent_presence_set(agent=agent, presence=Presence.AWAY)
    agent.refresh_from_db()
    rows = list(AgentPresenceChange.objects.filter(agent=agent).order_by("id")
                .values_list("presence", "changed_at"))
    assert [p for p, _ in rows] == [Presence.AVAILABLE, Presence.AWAY]
    assert rows[-1][1] == agent.presence_changed_at


def test_presence_expire_records_history_in_its_one_statement():
    stale = AgentFactory(presence=Presence.AVAILABLE, heartbeat_at=timezone.now() - timedelta(hours=1))
    fresh = AgentFactory(presence=Presence.AVAILABLE)
    with CaptureQueriesContext(connection) as queries:
        assert agents_presence_expire() == 1
    writes = [q["sql"] for q in queries.captured_queries if "assignment_agent" in q["sql"]]
    assert len(writes) == 1  # the history is the trigger's, inside the same statement
    stale.refresh_from_db()
    assert list(AgentPresenceChange.objects.values_list("agent_id", "presence", "changed_at")) == [
        (stale.pk, Presence.OFFLINE, stale.presence_changed_at)]
    assert not AgentPresenceChange.objects.filter(agent=fresh).exists()


def test_presence_history_purge_keeps_the_last_30_days():
    agent = AgentFactory(presence=Presence.OFFLINE)
    now = timezone.now()
    for days in (31, 29):
        with at(now - timedelta(days=days)):
            agent_presence_set(agent=agent, presence=Presence.AVAILABLE if days == 31 else Presence.AWAY)
    assert agent_presence_changes_purge(now=now) == 1
    assert list(AgentPresenceChange.objects.values_list("presence", flat=True)) == [Presence.AWAY]


def test_every_way_presence_changes_is_recorded_by_the_database():
    """The admin's form and the demo write the row directly: the trigger records them as well."""
    agent = AgentFactory(presence=Presence.OFFLINE)
    Agent.objects.filter(pk=agent.pk).update(presence=Presence.AWAY)  # no presence_changed_at given
    Agent.objects.filter(pk=agent.pk).update(heartbeat_at=timezone.now())  # not a presence change
    Agent.objects.filter(pk=agent.pk).update(presence=Presence.AWAY)  # the same presence again
    assert list(AgentPresenceChange.objects.filter(agent=agent).values_list("presence", flat=True)) == [
        Presence.AWAY]
