"""The assignment board and the routing-decision panel of a case, in the admin: what they show,
that it is escaped, that the board's query count is constant, and that loads survive Redis down."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.assignment import counters, services
from apps.assignment.board import decision_explain
from apps.cases import services as case_services
from apps.cases.models import Case
from tests.factories import AgentFactory
from tests.factories.accounts import UserFactory
from tests.factories.cases import QueueFactory, make_case

pytestmark = pytest.mark.django_db

BOARD = "/admin/assignment/agent/board/"
SCRIPT = "<script>alert(1)</script>"


@pytest.fixture
def ops(client):
    client.force_login(UserFactory(username="ops-board", roles=["ops"]))
    return client


def _case_page(client, case) -> str:
    response = client.get(f"/admin/cases/case/{case.pk}/change/")
    assert response.status_code == 200
    return response.content.decode()


def test_case_page_explains_who_got_the_case_and_why(ops):
    queue = QueueFactory(slug="refunds-b", config__routing={"required_skills": ["refunds"]})
    AgentFactory(display_name="Winner Wu", queues=[queue], skills=["refunds"], capacity=5)
    AgentFactory(display_name="Runner Ray", queues=[queue], skills=["refunds"], capacity=3)
    AgentFactory(display_name="No Skill", queues=[queue], skills=["english"])
    case = make_case(queue=queue, subject="refund please")

    assert services.assignment_batch_run().assigned == 1
    page = _case_page(ops, case)
    assert "Routing decision" in page and "Why is this case still waiting?" not in page
    assert 'class="routing-outcome">offered<' in page
    assert 'class="routing-winner">Winner Wu<' in page and "strategy most spare capacity" in page
    assert '<td data-rule="missing_skill">1</td>' in page and '<td data-rule="full">0</td>' in page
    # Top candidates by score: the winner first (5 spare units), then the runner-up (3).
    assert page.index("Winner Wu (chosen)") < page.index("Runner Ray") and "5 spare units" in page


def test_case_page_answers_why_a_case_is_still_waiting(ops):
    queue = QueueFactory(slug="fraud-b", config__routing={"required_skills": ["fraud"]})
    other = QueueFactory(slug="other-b")
    AgentFactory(queues=[queue], presence="offline")
    AgentFactory(queues=[queue], heartbeat_at=timezone.now() - timedelta(hours=1))
    AgentFactory(queues=[other])
    AgentFactory(queues=[queue], skills=["english"])
    full = AgentFactory(queues=[queue], skills=["fraud"], capacity=1)
    case_services.case_assign(case=make_case(queue=queue), agent=full)
    case = make_case(queue=queue, subject="still waiting")

    page = _case_page(ops, case)
    assert "Why is this case still waiting?" in page and "The engine has not looked at this case yet" in page

    assert services.assignment_batch_run().assigned == 0
    page = _case_page(ops, case)
    assert "Why is this case still waiting?" in page
    assert ("No agent could take it: 1 offline or away, 1 heartbeat stale, 1 not in the queue, "
            "1 missing a skill, 1 at capacity.") in page
    assert "No candidate had room." in page and "Looked at again from" in page


def test_the_waiting_reasons_cover_every_kind_of_decision():
    at = timezone.now().isoformat()
    waiting = {"outcome": "waiting", "at": at, "strategy": "round_robin", "removed": {}, "top": [[7, 12.0]]}
    raced = decision_explain({**waiting, "note": "capacity taken by a concurrent batch"}, names={7: "Ann"},
                             waiting=True)
    assert raced.reasons == ["Capacity taken by a concurrent batch.",
                             "Agents could take it, but a concurrent batch used their capacity first."]
    assert raced.top == [("Ann", "idle 12 s", False)] and raced.strategy == "round robin"
    nobody = decision_explain({**waiting, "top": []}, names={}, waiting=True)
    assert nobody.reasons == ["No agent could take it: there were no agents at all."]
    unassigned = decision_explain({**waiting, "outcome": "assigned", "winner": 9, "top": [[9, 2]]}, names={},
                                  waiting=True)
    assert unassigned.winner == "agent #9" and "unassigned since" in unassigned.reasons[0]
    no_config = decision_explain({"outcome": "waiting", "at": at, "strategy": "", "note": "queue has no "
                                  "active config"}, names={}, waiting=True)
    assert no_config.reasons == ["Queue has no active config."]
    assert decision_explain(None, names={}, waiting=False).reasons == []


def test_agent_names_and_subjects_are_escaped_on_the_case_page_and_the_board(ops):
    queue = QueueFactory(slug="xss-b", name=f"Queue {SCRIPT}")
    AgentFactory(display_name=f"Agent {SCRIPT}", queues=[queue])
    case = make_case(queue=queue, subject=f"Subject {SCRIPT}")
    make_case(queue=queue, subject=f"Second {SCRIPT}")
    Case.objects.filter(pk=case.pk).update(created_at=timezone.now() - timedelta(hours=1))
    # One assigned (a recent decision naming the agent), one left waiting (its queue's oldest).
    services.assignment_batch_run(batch_size=1)

    for page in (_case_page(ops, case), ops.get(BOARD).content.decode(),
                 ops.get(BOARD, {"partial": 1}).content.decode()):
        assert "<script>alert(1)" not in page
        assert "Agent &lt;script&gt;alert(1)&lt;/script&gt;" in page
    board = ops.get(BOARD).content.decode()
    assert "Queue &lt;script&gt;" in board and "Second &lt;script&gt;" in board


def _world(n: int) -> None:
    """n queues, each with two agents, waiting cases and one engine-assigned case."""
    for i in range(n):
        queue = QueueFactory(slug=f"board-{n}-{i}")
        AgentFactory(queues=[queue], capacity=1)
        AgentFactory(queues=[queue], presence="away")
        for _ in range(3):
            make_case(queue=queue)
    services.assignment_batch_run()


def test_board_shows_backlog_oldest_wait_agents_and_recent_decisions(ops):
    queue = QueueFactory(slug="general-b", name="General B")
    busy = AgentFactory(display_name="Busy Bea", queues=[queue], capacity=1)
    AgentFactory(display_name="Away Al", queues=[queue], presence="away")
    AgentFactory(display_name="Stale Stu", heartbeat_at=timezone.now() - timedelta(hours=1))
    first = make_case(queue=queue, subject="first in line")
    oldest = make_case(queue=queue, subject="waiting longest")
    make_case(queue=queue, subject="newest")
    Case.objects.filter(pk=first.pk).update(created_at=timezone.now() - timedelta(days=3))
    Case.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(hours=2, minutes=5))
    services.assignment_batch_run()  # Bea takes the first case and is full; two wait

    page = ops.get(BOARD).content.decode()
    assert 'data-refresh-ms="5000"' in page and "Assignment board" in page
    body = ops.get(BOARD, {"partial": 1}).content.decode()
    assert "<html" not in body
    assert '<tr data-queue="general-b">' in body and "<td data-waiting>2</td>" in body
    assert '<td data-oldest-wait>2 h 5 min</td>' in body and "waiting longest" in body
    assert "1 at capacity" in body  # why the oldest waits
    assert "<td>1 / 2</td>" in body  # agents taking cases / linked to the queue
    bea = body[body.index(f'<tr data-agent="{busy.pk}"'):]
    assert "Busy Bea" in bea and "<td data-load>1 / 1 (full)</td>" in bea[:bea.index("</tr>")]
    assert "Away</td>" in body and "Available <span class=\"board-stale\">(heartbeat stale)</span>" in body
    assert "loads from Redis counters" in body
    decisions = body[body.index('class="board-decisions"'):]
    assert "first in line" in decisions and "<td>Busy Bea <small>(offered)</small></td>" in decisions


def test_board_query_count_is_constant(ops, django_assert_num_queries):
    def board_queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert ops.get(BOARD, {"partial": 1}).status_code == 200
        return len(captured)

    _world(1)
    small = board_queries()
    _world(4)
    assert board_queries() == small
    # Session, user, the user's and their groups' permissions, then the board's six (loads come
    # from Redis): waiting counts, oldest per queue, staffing, agents, recent decisions, queues.
    with django_assert_num_queries(10):
        ops.get(BOARD, {"partial": 1})


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def counters_unreachable(settings):
    settings.REDIS_COUNTERS_URL = f"redis://127.0.0.1:{_closed_port()}/3"
    counters._client.cache_clear()
    counters._scripts.cache_clear()
    yield
    counters._client.cache_clear()
    counters._scripts.cache_clear()


def test_board_reads_loads_from_postgres_while_redis_is_rebuilt(ops, redis_client):
    queue = QueueFactory(slug="rebuilt-b")
    agent = AgentFactory(queues=[queue], capacity=4)
    services.assignment_batch_run()  # no case: nothing reserved
    case_services.case_assign(case=make_case(queue=queue), agent=agent)
    redis_client.flushdb()
    body = ops.get(BOARD, {"partial": 1}).content.decode()
    assert "loads from PostgreSQL (the Redis counters are being rebuilt)" in body
    assert "<td data-load>1 / 4</td>" in body


def test_board_answers_from_postgres_when_redis_is_down(ops, counters_unreachable):
    queue = QueueFactory(slug="down-b")
    agent = AgentFactory(queues=[queue], capacity=4)
    case_services.case_assign(case=make_case(queue=queue), agent=agent)
    make_case(queue=queue)

    response = ops.get(BOARD, {"partial": 1})
    assert response.status_code == 200
    body = response.content.decode()
    assert "loads from PostgreSQL (the Redis counters are unreachable)" in body
    assert "<td data-load>1 / 4</td>" in body and "<td data-waiting>1</td>" in body
    assert ops.get(BOARD).status_code == 200


def test_board_is_linked_from_the_agents_and_the_app_pages(ops):
    assert f'href="{BOARD}"' in ops.get("/admin/assignment/agent/").content.decode()
    assert f'href="{BOARD}"' in ops.get("/admin/assignment/").content.decode()
