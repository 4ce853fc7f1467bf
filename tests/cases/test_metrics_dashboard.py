"""The support metrics dashboard in admin: who sees it, what it shows from the rollups (filters,
escaping, experiment impact), its CSV, bad filters answered with form errors, and its query count."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from apps.cases.models import MetricRollupAgentDay, MetricRollupQueueDay, SignalOutcome
from apps.cases.services import metric_rollups_consume
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import QueueFactory, make_case

pytestmark = pytest.mark.django_db

URL = "/admin/cases/casestats/dashboard/"
D = date(2026, 3, 2)


def login(role: str) -> Client:
    client = Client()
    client.force_login(UserFactory(username=f"{role}-user", roles=[role]))
    return client


def rollup(day: date, queue, agent=None, **counters) -> None:
    """A day row as the rollup consumer would have written it (its tests prove the numbers)."""
    MetricRollupQueueDay.objects.create(day=day, queue=queue, **counters)
    if agent is not None:
        MetricRollupAgentDay.objects.create(day=day, queue=queue, agent=agent, **counters)


def cells(response, table: str) -> dict[str, list[str]]:
    """Row header -> cell texts of one of the dashboard's tables."""
    html = response.content.decode()
    body = html[html.index(f'id="{table}"'):]
    body = body[:body.index("</table>")]
    rows = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body, flags=re.S):
        head = re.search(r'<th scope="row">(.*?)</th>', row, flags=re.S)
        if head:
            found = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
            rows[head.group(1).strip()] = [c.strip() for c in found]
    return rows


@pytest.fixture
def ops():
    return login("ops")


def test_only_ops_see_the_dashboard(client):
    assert login("ops").get(URL).status_code == 200
    assert login("agent").get(URL).status_code == 403
    assert login("queue-config-editor").get(URL).status_code == 403
    assert client.get(URL).status_code == 302  # to the login page
    # The case stats list links to it for ops only.
    assert URL.encode() in login("ops").get("/admin/cases/casestats/").content
    assert URL.encode() not in login("agent").get("/admin/cases/casestats/").content


def test_dashboard_shows_rollups_per_day_queue_and_agent_and_filters_by_queue(ops):
    billing, returns = QueueFactory(slug="billing"), QueueFactory(slug="returns")
    ann = AgentFactory(display_name="Ann")
    # Billing, day 1: 4 created, 2 resolved in 600 s and 1800 s (time to resolve 20 min), handled
    # 300 + 900 s (AHT 10 min), 6 manual actions (MTR 3.00), DWR 1 of 2 (50.0%), one SLA breach.
    rollup(D, billing, ann, created=4, resolved=2, resolve_seconds=2400, handled=2, handle_seconds=1200,
           manual_actions=6, dwr_ok=1, dwr_reopened=1, fcr_ok=2, resolution_breached=1, offers_expired=3)
    # Returns, day 2: 1 created, nothing resolved.
    rollup(D + timedelta(1), returns, created=1)
    make_case(queue=returns)  # one open case now: the backlog of returns

    response = ops.get(URL, {"start": "2026-03-01", "end": "2026-03-03"})
    assert response.status_code == 200
    days = cells(response, "metrics-days")
    assert list(days) == ["2026-03-01", "2026-03-02", "2026-03-03"]  # days without data shown as zeros
    assert days["2026-03-02"][:8] == ["4", "2", "10.0 min", "20.0 min", "3.00", "50.0%", "100.0%", "–"]
    assert days["2026-03-03"][:2] == ["1", "0"] and days["2026-03-01"][:2] == ["0", "0"]
    queues = cells(response, "metrics-queues")
    assert queues["billing"][:3] == ["0", "4", "2"] and queues["returns"][:3] == ["1", "1", "0"]
    assert cells(response, "metrics-agents")["Ann"][:3] == ["4", "2", "10.0 min"]
    chart = response.context["chart"]
    assert chart["created"] == [0, 4, 1] and chart["aht_minutes"] == [None, 10.0, None]
    assert chart["sla_breaches"] == [0, 1, 0] and chart["offers_expired"] == [0, 3, 0]
    assert response.context["totals"]["created"] == "5" and response.context["totals"]["backlog"] == "1"

    only_returns = ops.get(URL, {"start": "2026-03-01", "end": "2026-03-03", "queues": [returns.pk]})
    assert only_returns.context["totals"]["created"] == "1"
    assert list(cells(only_returns, "metrics-queues")) == ["returns"]
    assert cells(only_returns, "metrics-agents") == {}


def test_dashboard_reads_what_the_rollup_consumer_wrote(ops):
    queue = QueueFactory(slug="live")
    make_case(queue=queue)
    make_case(queue=queue)
    metric_rollups_consume()
    response = ops.get(URL)  # defaults: the last 30 days up to today
    assert response.status_code == 200
    assert response.context["totals"]["created"] == "2"
    assert cells(response, "metrics-queues")["live"][:2] == ["2", "2"]


def test_names_are_escaped_everywhere(ops):
    queue = QueueFactory(slug="xss", name='<script>alert("q")</script>')
    agent = AgentFactory(display_name="<img src=x onerror=alert(1)>")
    rollup(D, queue, agent, created=1)
    html = ops.get(URL, {"start": "2026-03-02", "end": "2026-03-02"}).content.decode()
    assert "<img src=x" not in html and '<script>alert("q")' not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and "&lt;script&gt;alert(" in html


@pytest.mark.parametrize("params", [
    {"start": "2026-13-01"},
    {"end": "yesterday"},
    {"end": "0001-01-05"},  # the default start would fall before year 1
    {"start": "2026-03-05", "end": "2026-03-01"},
    {"start": "2020-01-01", "end": "2026-01-01"},  # beyond the range cap
    {"queues": ["not-a-number"]},
    {"queues": ["999999"]},
])
def test_bad_filters_answer_with_form_errors(ops, params):
    response = ops.get(URL, params)
    assert response.status_code == 400
    assert b"errorlist" in response.content and b"metrics-chart-data" not in response.content
    assert ops.get(URL, {**params, "csv": "day"}).status_code == 400


def test_csv_downloads_the_same_rows(ops):
    queue = QueueFactory(slug="billing")
    agent = AgentFactory(display_name="=HYPERLINK(\"http://evil\")")
    rollup(D, queue, agent, created=4, resolved=2, resolve_seconds=2400, handled=2, handle_seconds=1200)
    params = {"start": "2026-03-02", "end": "2026-03-03", "queues": [queue.pk]}
    by_day = ops.get(URL, {**params, "csv": "day"})
    assert by_day["Content-Type"].startswith("text/csv")
    assert "metrics-by-day-2026-03-02-2026-03-03.csv" in by_day["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(by_day.content.decode())))
    assert [(r["day"], r["created"], r["resolved"], r["aht_seconds"]) for r in rows] == [
        ("2026-03-02", "4", "2", "600.0"), ("2026-03-03", "0", "0", "")]
    by_queue = list(csv.DictReader(io.StringIO(ops.get(URL, {**params, "csv": "queue"}).content.decode())))
    assert [(r["queue"], r["time_to_resolve_seconds"]) for r in by_queue] == [("billing", "1200.0")]
    by_agent = list(csv.DictReader(io.StringIO(ops.get(URL, {**params, "csv": "agent"}).content.decode())))
    assert by_agent[0]["agent"] == "'=HYPERLINK(\"http://evil\")"  # not run as a formula
    assert ops.get(URL, {**params, "csv": "cases"}).status_code == 400
    assert login("agent").get(URL, {**params, "csv": "day"}).status_code == 403


def test_experiment_impact_shows_rates_and_significance(ops):
    queue = QueueFactory(slug="late")
    # Control: 40 deliveries, 20 followed up (50%); treatment: 40 deliveries, 4 followed up (10%).
    # pooled 24/80 = 0.3, se = sqrt(0.3 · 0.7 · (2/40)) = 0.102470, z = -0.4 / 0.102470 = -3.90, p < 0.001.
    for group, followed in (("control", 20), ("treatment", 4)):
        for n in range(40):
            ref = f"{group}-{n}"
            SignalOutcome.objects.create(delivery_ref=ref, signal_type="late_delivery", queue=queue,
                                         experiment="late-2026", group=group)
            if n < followed:
                make_case(queue=queue, delivery_ref=ref, source="api")
    make_case(queue=queue, delivery_ref="treatment-39", source="signal", signal_type="late_delivery")
    row = cells(ops.get(URL), "metrics-experiments")["late-2026"]
    assert row[:3] == ["40", "4", "10.0% (4.0% to 23.1%)"]
    assert row[3:6] == ["40", "20", "50.0% (35.2% to 64.8%)"]
    assert row[6].startswith("-40.0 pp (") and row[7] == "&lt; 0.001"
    assert row[8] == "significant: fewer follow-ups with outreach"


def test_query_count_does_not_grow_with_days_queues_or_agents(ops):
    def count(**params) -> int:
        ops.get(URL, params)  # warm the session and permission caches alike
        with CaptureQueriesContext(connection) as queries:
            assert ops.get(URL, params).status_code == 200
        return len(queries)

    first = QueueFactory(slug="q-0")
    rollup(D, first, AgentFactory(), created=1)
    small = count(start="2026-03-02", end="2026-03-02")
    queues = [first, *(QueueFactory(slug=f"q-{n}") for n in range(1, 6))]
    agents = [AgentFactory() for _ in range(6)]
    for day in range(1, 60):
        for queue, agent in zip(queues, agents, strict=True):
            rollup(D + timedelta(day), queue, agent, created=1, resolved=1)
    SignalOutcome.objects.create(delivery_ref="d-1", signal_type="s", queue=first, experiment="e",
                                 group="control")
    big = count(start="2026-03-02", end="2026-04-30")
    assert big == small
    filtered = count(start="2026-03-02", end="2026-04-30", queues=[q.pk for q in queues])
    assert filtered == small + 1  # the chosen queues are checked against the database
    # Session, user, 2 permission loads, ops group, queue choices, 3 series (day, queue, agent),
    # backlog now, experiment impact.
    assert small == 11
