"""Assignment's Prometheus metrics (from aggregate queries and the Redis counters) and the demo:
agents come online, keep a heartbeat only in the embedded demo, and the demo backlog is assigned
without exceeding anyone's capacity."""

from __future__ import annotations

import re
import socket
from datetime import timedelta

import pytest
from django.db.models import F
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from apps.assignment import counters, demo, services
from apps.assignment.models import Agent, Offer, OfferState, Presence
from apps.assignment.selectors import agent_loads
from apps.cases import demo as cases_demo
from apps.cases import services as case_services
from apps.cases.models import WAITING, Case, CaseEvent, EventKind
from apps.core import demo as core_demo
from apps.core.progress import SILENT
from tests.factories import AgentFactory
from tests.factories.cases import QueueFactory, make_case

pytestmark = pytest.mark.django_db


def _metrics(client) -> dict[str, float]:
    text = client.get("/metrics").content.decode()
    return {m[1]: float(m[2]) for m in re.finditer(r"^(casehub_[^ ]+) ([^ ]+)$", text, re.M)}


def test_metrics_export_backlog_oldest_wait_agents_and_wait_to_assign(client):
    queue = QueueFactory(slug="m-general")
    QueueFactory(slug="m-idle")
    agent = AgentFactory(queues=[queue])
    AgentFactory(presence=Presence.AWAY)
    AgentFactory(heartbeat_at=timezone.now() - timedelta(hours=1))
    waiting = [make_case(queue=queue) for _ in range(2)]
    Case.objects.filter(pk=waiting[0].pk).update(created_at=timezone.now() - timedelta(hours=2))
    taken = make_case(queue=queue)
    case_services.case_assign(case=taken, agent=agent)
    # Assigned 100 s after it was created; stored that way so the test needs no clock.
    Case.objects.filter(pk=taken.pk).update(created_at=F("first_assigned_at") - timedelta(seconds=100))

    m = _metrics(client)
    assert m['casehub_metrics_collector_up{collector="assignment"}'] == 1
    assert m['casehub_assignment_waiting_cases{queue="m-general"}'] == 2
    assert m['casehub_assignment_waiting_cases{queue="m-idle"}'] == 0
    assert m['casehub_assignment_oldest_wait_seconds{queue="m-general"}'] >= 2 * 3600
    assert m['casehub_assignment_oldest_wait_seconds{queue="m-idle"}'] == 0
    assert m["casehub_assignment_agents_available"] == 1
    assert m['casehub_assignment_agents{state="available"}'] == 1
    assert m['casehub_assignment_agents{state="stale_heartbeat"}'] == 1
    assert m['casehub_assignment_agents{state="away"}'] == 1
    assert m['casehub_assignment_agents{state="offline"}'] == 0
    wait = "casehub_assignment_wait_to_assign_seconds"
    assert m[f'{wait}_bucket{{le="60.0"}}'] == 0 and m[f'{wait}_bucket{{le="120.0"}}'] == 1
    assert m[f'{wait}_bucket{{le="+Inf"}}'] == 1 and m[f"{wait}_gcount"] == 1
    assert m[f"{wait}_gsum"] == pytest.approx(100, abs=0.01)


def test_metrics_report_counter_drift_until_reconcile_heals_it(client, redis_client):
    queue = QueueFactory(slug="m-drift")
    agent = AgentFactory(queues=[queue])
    make_case(queue=queue)
    services.assignment_batch_run()
    m = _metrics(client)
    assert m["casehub_assignment_counters_readable"] == 1
    assert m["casehub_assignment_counter_drift_agents"] == 0
    assert m["casehub_assignment_counter_drift_units"] == 0

    redis_client.hset(counters.LOAD, agent.pk, 6)  # 5 units more than PostgreSQL holds
    m = _metrics(client)
    assert m["casehub_assignment_counter_drift_agents"] == 1
    assert m["casehub_assignment_counter_drift_units"] == 5

    services.counters_reconcile()
    m = _metrics(client)
    assert m["casehub_assignment_counter_drift_units"] == 0
    # What the reconcile job found and corrected stays visible after the fact.
    assert m["casehub_assignment_reconcile_drift_agents_total"] == 1
    assert m["casehub_assignment_reconcile_drift_units_total"] == 5
    runs = m["casehub_assignment_reconcile_runs_total"]
    assert runs >= 1 and m["casehub_assignment_reconcile_rebuilt_from_empty_total"] >= 1  # the first build
    services.counters_reconcile()  # nothing off this time
    m = _metrics(client)
    assert m["casehub_assignment_reconcile_runs_total"] == runs + 1
    assert m["casehub_assignment_reconcile_drift_units_total"] == 5


def test_metrics_count_recent_offers_by_outcome(client):
    queue = QueueFactory(slug="m-offers")
    AgentFactory(queues=[queue])
    first, second = make_case(queue=queue), make_case(queue=queue)
    services.assignment_batch_run()
    m = _metrics(client)
    assert m['casehub_assignment_offers{queue="m-offers",state="pending"}'] == 2
    assert m['casehub_assignment_offers{queue="m-offers",state="expired"}'] == 0
    Offer.objects.filter(case=first).update(created_at=timezone.now() - timedelta(seconds=61),
                                            expires_at=timezone.now() - timedelta(seconds=1))
    assert services.offers_expire() == 1
    m = _metrics(client)
    assert m['casehub_assignment_offers{queue="m-offers",state="pending"}'] == 1
    assert m['casehub_assignment_offers{queue="m-offers",state="expired"}'] == 1
    assert second.offers.get().state == OfferState.PENDING


def test_metrics_still_answer_with_redis_down(client, settings):
    QueueFactory(slug="m-down")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.REDIS_COUNTERS_URL = f"redis://127.0.0.1:{port}/3"
    counters._client.cache_clear()
    try:
        m = _metrics(client)
    finally:
        counters._client.cache_clear()
    assert m['casehub_metrics_collector_up{collector="assignment"}'] == 1
    assert m["casehub_assignment_counters_readable"] == 0
    assert "casehub_assignment_counter_drift_units" not in m
    assert m['casehub_assignment_waiting_cases{queue="m-down"}'] == 0


def _seed() -> None:
    core_demo.seed(progress=SILENT)
    demo.seed(progress=SILENT)
    cases_demo.seed(progress=SILENT)


def test_demo_agents_come_online_and_the_demo_backlog_is_assigned_within_capacity():
    _seed()
    agents = {a.user.username: a for a in demo.demo_agents().select_related("user")}
    assert len(agents) == demo.DEMO_AGENTS
    fresh_since = timezone.now() - timedelta(seconds=30)
    for n, (_, _, presence) in enumerate(demo.AGENTS, 1):
        agent = agents[f"agent{n}"]
        assert agent.presence == presence
        assert (agent.heartbeat_at is not None and agent.heartbeat_at >= fresh_since) == (
            presence == Presence.AVAILABLE)
    waiting = Case.objects.filter(WAITING).count()
    assert waiting > 200

    # A few batches at most (each claims up to ASSIGNMENT_BATCH_SIZE): the beat runs one every 2 s.
    for _ in range(5):
        if not services.assignment_batch_run().assigned:
            break
    assert Case.objects.filter(WAITING).count() == 0
    loads = agent_loads()
    capacity = dict(Agent.objects.values_list("pk", "capacity"))
    assert all(load <= capacity[agent_id] for agent_id, load in loads.items()), (loads, capacity)
    assert {a: n for a, n in counters.counters_loads().items() if n} == {a: n for a, n in loads.items() if n}
    by_engine = CaseEvent.objects.filter(kind=EventKind.OFFERED, data__by="engine")
    assert by_engine.count() == waiting
    assert not by_engine.filter(data__to=agents["agent3"].pk).exists()  # away
    # The demo's stand-in client accepts every offer on the agents' behalf.
    assert demo.demo_offers_accept() == waiting
    assert not Offer.objects.filter(state=OfferState.PENDING).exists()
    assert CaseEvent.objects.filter(kind=EventKind.OFFER_ACCEPTED).count() == waiting


@pytest.fixture
def demo_heartbeats(settings):
    """Switches the demo heartbeats (ASSIGNMENT_DEMO_HEARTBEATS: on by default in the embedded stack)."""

    def switch(on: bool) -> None:
        settings.ASSIGNMENT_DEMO_HEARTBEATS = on

    return switch


def test_demo_heartbeats_keep_available_demo_agents_fresh_in_the_embedded_demo_only(demo_heartbeats,
                                                                                      settings):
    demo_heartbeats(True)
    _seed()
    outsider = AgentFactory(heartbeat_at=timezone.now() - timedelta(hours=1))
    stale = timezone.now() - timedelta(hours=1)
    Agent.objects.update(heartbeat_at=stale)
    Agent.objects.filter(user__username="agent1").update(presence=Presence.OFFLINE)  # set offline by ops

    assert demo.demo_agents_heartbeat() == demo.DEMO_AGENTS - 2
    fresh = set(Agent.objects.filter(heartbeat_at__gt=stale).values_list("user__username", flat=True))
    assert fresh == {f"agent{n}" for n in (2, 4, 5, 6, 7, 8)}
    assert Agent.objects.get(pk=outsider.pk).heartbeat_at == stale

    # The beat runs it while the demo runs; Celery knows it by that name.
    from config.celery import app

    assert demo.HEARTBEAT_TASK in app.tasks
    schedule = PeriodicTask.objects.get(name=demo.HEARTBEAT_SCHEDULE)
    assert schedule.task == demo.HEARTBEAT_TASK and schedule.enabled
    assert schedule.interval.every * 2 < settings.ASSIGNMENT_HEARTBEAT_TTL_SECONDS

    # Restarting the demo brings agents the expiry job turned offline back online.
    demo.seed(progress=SILENT)
    assert Agent.objects.get(user__username="agent1").presence == Presence.AVAILABLE


def test_outside_the_embedded_demo_no_heartbeat_is_sent_and_none_is_scheduled(demo_heartbeats):
    demo_heartbeats(False)
    _seed()
    stale = timezone.now() - timedelta(hours=1)
    Agent.objects.update(heartbeat_at=stale)
    assert demo.demo_agents_heartbeat() == 0
    assert not Agent.objects.exclude(heartbeat_at=stale).exists()
    assert not PeriodicTask.objects.filter(task=demo.HEARTBEAT_TASK).exists()
