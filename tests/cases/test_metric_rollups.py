"""Support metrics rollups over hand-built event histories: every value below is worked out by hand
in the comments. Events go through the real services with the clock set (timezone.now patched),
so the rows carry the times the histories name."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.cases import metrics, services
from apps.cases.models import (
    Case,
    CaseEvent,
    CaseMetricFacts,
    EventKind,
    MetricRollupAgentDay,
    MetricRollupQueueDay,
    QueueConfig,
    Status,
)
from apps.cases.selectors import metric_series
from apps.cases.services import BulkAssignment
from apps.core.errors import ApplicationError
from apps.core.models import FeedCursor
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import QueueFactory, make_case

D = date(2026, 3, 2)
SLA = {"first_response_minutes": 30, "resolution_minutes": 120}


def at(day_offset: int, hhmm: str) -> datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return datetime(D.year, D.month, D.day, hours, minutes, tzinfo=UTC) + timedelta(days=day_offset)


class Clock:
    now = at(0, "08:00")


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(timezone, "now", lambda: clock.now)
    return clock


def case_at(clock, when: datetime, queue, **kwargs) -> Case:
    clock.now = when
    case = make_case(queue=queue, **kwargs)
    Case.objects.filter(pk=case.pk).update(created_at=when)  # the model default is not the patched clock
    return case


def offer(case: Case, agent) -> None:
    """What the assignment engine writes when it offers a case (actor: none)."""
    case.refresh_from_db()
    services.cases_assign_many(
        assignments=[BulkAssignment(case_id=case.pk, queue_id=case.queue_id, status=case.status,
                                    agent_id=agent.pk, weight=1,
                                    offer_expires_at=timezone.now() + timedelta(minutes=1))],
        decisions={}, configs={})


def consume(clock, when: datetime) -> int:
    clock.now = when
    return services.metric_rollups_consume()


def queue_day(queue, day: date = D) -> dict:
    [row] = metric_series(start=day, end=day, queue_ids=[queue.pk], by="queue")
    return row


def rollup_snapshot() -> list[tuple]:
    fields = ["day", "queue_id", "created", "resolved", "handle_seconds", "resolve_seconds", "manual_actions",
              "dwr_ok", "dwr_reopened", "fcr_ok", "fcr_failed", "offers_expired", "offer_wait_buckets"]
    return (list(MetricRollupQueueDay.objects.order_by("day", "queue_id").values_list(*fields))
            + list(MetricRollupAgentDay.objects.order_by("day", "queue_id", "agent_id")
                   .values_list("agent_id", *fields)))


@pytest.fixture
def history(clock):
    """Queue 'refunds' (SLA: reply 30 min, resolve 120 min; window 7 days) on day D.

    A (c1/d1): offered to X 09:02 and expired 09:03, offered again 09:05, accepted 09:06; X replies
      09:10, sets pending_customer 09:20, back in_progress 10:20, adds a note 10:30, resolves 11:06.
      AHT = 11:06 - 09:06 - 1 h pending = 3600 s; TTR = 2 h 06 = 7560 s (> 7200: resolution breach);
      MTR actions = reply, pending, in_progress, note, resolve = 5 (the move to 'assigned' on
      acceptance follows the acceptance); first offer 120 s; first response 600 s; 1 offer expired.
    B (c2/d2): a lead assigns Y at 12:30 (no offers: acceptance); Y replies 12:40 and 12:50, resolves
      13:30. AHT 3600; TTR 5400; MTR 3; first offer 1800; first response 2400 (> 1800: breach);
      two agent contacts: FCR fails at once.
    C (c3/d3): no agent, resolved by the system 14:30: TTR 1800, no AHT, MTR 0; no offer, no reply.
    """
    queue = QueueFactory(slug="refunds", config__sla=SLA)
    x, y = AgentFactory(display_name="X"), AgentFactory(display_name="Y")
    lead = UserFactory(username="lead")
    a = case_at(clock, at(0, "09:00"), queue, customer_ref="c1", delivery_ref="d1")
    clock.now = at(0, "09:02")
    offer(a, x)
    clock.now = at(0, "09:03")
    services.cases_offers_release(releases=[(a.pk, x.pk, EventKind.OFFER_EXPIRED)])
    clock.now = at(0, "09:05")
    offer(a, x)
    clock.now = at(0, "09:06")
    services.case_offer_accept(case=a, agent=x, actor=x.user)
    clock.now = at(0, "09:10")
    services.case_add_message(case=a, body="On it.", actor=x.user)
    for when, status in (("09:20", Status.PENDING_CUSTOMER), ("10:20", Status.IN_PROGRESS)):
        clock.now = at(0, when)
        services.case_transition(case=a, to_status=status, actor=x.user)
    clock.now = at(0, "10:30")
    services.case_add_note(case=a, body="Refund approved.", actor=x.user)
    clock.now = at(0, "11:06")
    services.case_transition(case=a, to_status=Status.RESOLVED, actor=x.user)

    b = case_at(clock, at(0, "12:00"), queue, customer_ref="c2", delivery_ref="d2")
    clock.now = at(0, "12:30")
    services.case_assign(case=b, agent=y, actor=lead)
    for when in ("12:40", "12:50"):
        clock.now = at(0, when)
        services.case_add_message(case=b, body="Update", actor=y.user)
    clock.now = at(0, "13:30")
    services.case_transition(case=b, to_status=Status.RESOLVED, actor=y.user)

    c = case_at(clock, at(0, "14:00"), queue, customer_ref="c3", delivery_ref="d3")
    clock.now = at(0, "14:30")
    services.case_transition(case=c, to_status=Status.RESOLVED)
    return {"queue": queue, "x": x, "y": y, "a": a, "b": b, "c": c}


@pytest.mark.django_db
def test_each_metric_of_a_day_and_its_windows(clock, history):
    queue, x, y = history["queue"], history["x"], history["y"]
    consume(clock, at(0, "23:00"))
    day = queue_day(queue)
    assert (day["created"], day["resolved"], day["handled"]) == (3, 3, 2)
    assert day["aht_seconds"] == 3600  # (3600 + 3600) / 2
    assert day["time_to_resolve_seconds"] == 4920  # (7560 + 5400 + 1800) / 3
    assert day["mtr"] == pytest.approx(8 / 3)  # (5 + 3 + 0) / 3
    assert day["time_to_first_offer_seconds"] == 960  # (120 + 1800) / 2
    assert day["time_to_first_response_seconds"] == 1500  # (600 + 2400) / 2
    assert (day["first_response_breached"], day["resolution_breached"], day["offers_expired"]) == (1, 1, 1)
    # Windows still open: DWR undecided; FCR only B's (two contacts) decided.
    assert (day["dwr_ok"], day["dwr_reopened"], day["dwr"]) == (0, 0, None)
    assert (day["fcr_ok"], day["fcr_failed"], day["fcr"]) == (0, 1, 0.0)
    agents = {r["agent_id"]: r for r in metric_series(start=D, end=D, by="agent")}
    assert set(agents) == {x.pk, y.pk}  # C had no agent: only in the queue row
    assert (agents[x.pk]["aht_seconds"], agents[x.pk]["mtr"], agents[x.pk]["offers_expired"]) == (3600, 5, 1)
    assert (agents[y.pk]["resolved"], agents[y.pk]["fcr_failed"]) == (1, 1)

    # D+2 10:00: C is reopened, after its day was rolled up: within the window, so DWR and FCR fail.
    clock.now = at(2, "10:00")
    services.case_transition(case=history["c"], to_status=Status.REOPENED)
    consume(clock, at(2, "10:01"))
    day = queue_day(queue)
    assert (day["dwr_ok"], day["dwr_reopened"], day["fcr_failed"], day["resolved"]) == (0, 1, 2, 3)
    # D+3: a new case of the same customer and delivery as A: A's FCR fails (follow-up in window).
    case_at(clock, at(3, "09:00"), queue, customer_ref="c1", delivery_ref="d1")
    consume(clock, at(3, "09:01"))
    assert (queue_day(queue)["fcr_ok"], queue_day(queue)["fcr_failed"]) == (0, 3)
    # D+7 12:00: A's window (to D+7 11:06) has passed, B's (to D+7 13:30) not: A settles "not reopened".
    consume(clock, at(7, "12:00"))
    assert (queue_day(queue)["dwr_ok"], queue_day(queue)["dwr_reopened"]) == (1, 1)
    consume(clock, at(8, "00:00"))
    day = queue_day(queue)
    assert (day["dwr_ok"], day["dwr_reopened"], day["dwr"]) == (2, 1, pytest.approx(2 / 3))
    assert (day["fcr_ok"], day["fcr_failed"], day["fcr"]) == (0, 3, 0.0)
    assert queue_day(queue, D + timedelta(days=3))["created"] == 1  # the follow-up's own day
    by_day = metric_series(start=D, end=D + timedelta(days=7), queue_ids=[queue.pk])
    assert [(r["day"], r["created"], r["resolved"]) for r in by_day] == [
        (D, 3, 3), (D + timedelta(days=3), 1, 0)]


def republish(queue, *, sla: dict) -> None:
    active = QueueConfig.objects.get(queue=queue, is_active=True)
    services.queue_config_publish(queue=queue, fields_schema=active.fields_schema,
                                  transitions=active.transitions, initial_status=active.initial_status,
                                  sla=sla)


@pytest.mark.django_db
def test_each_queue_has_its_own_window(clock, settings):
    """Queue 'short' sets a 2-day window in its SLA; 'plain' sets none and takes the platform's 7.
    Each has one case resolved D 10:00 and reopened D+3 10:00: outside 2 days, inside 7."""
    settings.METRICS_REOPEN_WINDOW_DAYS = 7
    short = QueueFactory(slug="short", config__sla={**SLA, "reopen_window_days": 2})
    plain = QueueFactory(slug="plain", config__sla=SLA)
    cases = [case_at(clock, at(0, "09:00"), queue) for queue in (short, plain)]
    clock.now = at(0, "10:00")
    for case in cases:
        services.case_transition(case=case, to_status=Status.RESOLVED)
    consume(clock, at(2, "09:59"))
    assert [queue_day(q)["dwr"] for q in (short, plain)] == [None, None]  # both windows open
    consume(clock, at(2, "10:00"))  # the short window ends: settled without an event
    assert [queue_day(q)["dwr"] for q in (short, plain)] == [1.0, None]
    assert CaseMetricFacts.objects.get(case=cases[1]).settles_at == at(7, "10:00")
    clock.now = at(3, "10:00")
    for case in cases:
        services.case_transition(case=case, to_status=Status.REOPENED)
    consume(clock, at(8, "10:00"))
    decided = [(queue_day(q)["dwr_ok"], queue_day(q)["dwr_reopened"]) for q in (short, plain)]
    assert decided == [(1, 0), (0, 1)]

    # Widening the short queue's window re-decides its next cases by the new one: resolved D+8
    # 12:00, it is still open at D+10 12:00 (2 days) and settles at D+13 12:00 (5 days).
    republish(short, sla={**SLA, "reopen_window_days": 5})
    late = case_at(clock, at(8, "11:00"), short)
    clock.now = at(8, "12:00")
    services.case_transition(case=late, to_status=Status.RESOLVED)
    consume(clock, at(10, "12:00"))
    assert queue_day(short, D + timedelta(days=8))["dwr"] is None
    consume(clock, at(13, "12:00"))
    assert queue_day(short, D + timedelta(days=8))["dwr"] == 1.0


@pytest.mark.django_db
def test_the_window_is_checked_as_part_of_the_sla():
    queue = QueueFactory(slug="w")
    for bad in (0, 366, "7", 2.5):
        with pytest.raises(ApplicationError) as caught:
            republish(queue, sla={"reopen_window_days": bad})
        assert caught.value.errors == {
            "sla": ["'reopen_window_days' must be a whole number of days from 1 to 365."]}


@pytest.mark.django_db
def test_fcr_holds_once_the_window_passes_and_a_later_reopen_changes_nothing(clock, settings):
    settings.METRICS_REOPEN_WINDOW_DAYS = 2
    queue = QueueFactory(slug="chat")
    # G: resolved D 15:10 with no reply, customer c4/d4. A proactive case for the same delivery
    # (no customer contact) and a case of the same customer for another delivery are no follow-ups.
    g = case_at(clock, at(0, "15:00"), queue, customer_ref="c4", delivery_ref="d4")
    clock.now = at(0, "15:10")
    services.case_transition(case=g, to_status=Status.RESOLVED)
    case_at(clock, at(1, "09:00"), queue, customer_ref="c4", delivery_ref="d5")
    case_at(clock, at(1, "10:00"), queue, customer_ref="c4", delivery_ref="d4", source="signal",
            signal_type="late_delivery")
    consume(clock, at(1, "12:00"))
    assert (queue_day(queue)["fcr"], queue_day(queue)["dwr"]) == (None, None)  # window open
    consume(clock, at(2, "15:10"))  # the window (2 days) ends exactly now: decided
    assert (queue_day(queue)["fcr"], queue_day(queue)["dwr"]) == (1.0, 1.0)
    clock.now = at(3, "09:00")
    services.case_transition(case=g, to_status=Status.REOPENED)  # outside the window
    case_at(clock, at(3, "10:00"), queue, customer_ref="c4", delivery_ref="d4")  # a follow-up, too late
    consume(clock, at(3, "11:00"))
    day = queue_day(queue)
    assert (day["fcr_ok"], day["fcr_failed"], day["dwr_ok"], day["dwr_reopened"]) == (1, 0, 1, 0)


@pytest.mark.django_db
def test_late_events_land_on_their_own_earlier_day(clock):
    queue = QueueFactory(slug="late", config__sla=SLA)
    x = AgentFactory(display_name="X")
    h = case_at(clock, at(0, "10:00"), queue)
    services.case_assign(case=h, agent=x, actor=x.user)  # accepted 10:00
    consume(clock, at(2, "09:00"))
    assert (queue_day(queue)["created"], queue_day(queue)["resolved"]) == (1, 0)
    # Written on D+2, timestamped D 18:00 (a client that was offline): D's row gets the resolution.
    clock.now = at(0, "18:00")
    services.case_transition(case=h, to_status=Status.RESOLVED, actor=x.user)
    consume(clock, at(2, "09:05"))
    day = queue_day(queue)
    assert (day["resolved"], day["aht_seconds"], day["first_response_n"]) == (1, 8 * 3600, 0)
    assert not MetricRollupQueueDay.objects.filter(day=D + timedelta(days=2)).exists()
    # Later still, a reply timestamped D 11:00 (before the resolution already folded in): it is
    # the first response (3600 s, > 30 min: a breach) and the one agent contact before resolving.
    clock.now = at(0, "11:00")
    services.case_add_message(case=h, body="Sorted.", actor=x.user)
    consume(clock, at(2, "09:10"))
    day = queue_day(queue)
    assert (day["first_response_n"], day["time_to_first_response_seconds"]) == (1, 3600)
    assert (day["first_response_breached"], day["mtr"]) == (1, 2)  # reply + resolve
    assert CaseMetricFacts.objects.get(pk=h.pk).agent_contacts == 1


@pytest.mark.django_db
def test_replays_give_the_same_numbers(clock, history):
    clock.now = at(2, "10:00")
    services.case_transition(case=history["c"], to_status=Status.REOPENED)
    consume(clock, at(8, "00:00"))
    first = rollup_snapshot()
    assert first and any(row[1] for row in first)
    assert consume(clock, at(8, "00:00")) == 0 and rollup_snapshot() == first
    # The same events folded again, in pieces and whole, then the whole feed after a cursor reset.
    batch = list(CaseEvent.objects.order_by("id"))
    services.metric_rollups_fold(e.case_id for e in batch[:5])
    services.metric_rollups_fold(e.case_id for e in batch)
    assert rollup_snapshot() == first
    FeedCursor.objects.filter(name=services.METRIC_ROLLUPS_CONSUMER).update(position=0)
    assert consume(clock, at(8, "00:00")) == len(batch)
    assert rollup_snapshot() == first


@pytest.mark.django_db
def test_a_batch_takes_the_same_queries_for_10_and_100_events(clock):
    queue = QueueFactory(slug="bulk")
    agent = AgentFactory()
    services.metric_rollups_consume()  # the cursor row exists; the first round is like any other

    def round_of(cases: int) -> int:
        made = [case_at(clock, at(0, "09:00"), queue, customer_ref=f"k{n}", delivery_ref=f"d{n}")
                for n in range(Case.objects.count(), Case.objects.count() + cases)]
        services.case_assign(case=made[0], agent=agent)  # created + assigned + status: 3 events
        for case in made[1:]:
            services.case_transition(case=case, to_status=Status.RESOLVED)
        with CaptureQueriesContext(connection) as queries:
            read = consume(clock, at(0, "10:00"))
        return read, len(queries)

    small, large = round_of(5), round_of(50)
    assert (small[0], large[0]) == (3 + 4 * 2, 3 + 49 * 2)  # 11 and 101 events
    assert small[1] == large[1]


@pytest.mark.django_db
def test_metrics_endpoint_reads_the_rollups(clock, history):
    consume(clock, at(0, "23:00"))
    families = {f.name: f for f in metrics.collect()}

    def value(name: str, **labels) -> float:
        return next(s.value for s in families[name].samples if s.labels.items() >= labels.items()
                    and s.name in (name, name + "_total", name + "_bucket"))

    assert value("casehub_case_handle_time_seconds_avg", queue="refunds") == 3600
    assert value("casehub_case_first_contact_resolution_ratio", queue="refunds") == 0.0
    assert value("casehub_case_manual_actions_per_resolution", queue="refunds") == pytest.approx(8 / 3)
    assert value("casehub_cases_resolved", queue="refunds") == 3
    assert value("casehub_offers_expired", queue="refunds") == 1
    assert value("casehub_case_sla_breaches", queue="refunds", target="resolution") == 1
    assert value("casehub_cases_backlog", queue="refunds") == 0  # all three resolved
    assert "casehub_case_did_we_resolve_ratio" in families  # no sample until a window passes
    buckets = {s.labels["le"]: s.value for s in families["casehub_case_first_offer_seconds"].samples
               if s.name.endswith("_bucket")}
    # First offers: A 120 s, B 1800 s; C was never offered, so it is no observation.
    assert (buckets["60.0"], buckets["120.0"], buckets["1800.0"], buckets["+Inf"]) == (0, 1, 2, 2)
    lag = {s.labels["consumer"]: s.value for s in families["casehub_feed_lag_events"].samples}
    assert lag[services.METRIC_ROLLUPS_CONSUMER] == 0


@pytest.mark.django_db
def test_beat_schedule_of_the_consumer_exists_after_migrate():
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="apps.cases.tasks.metric_rollups_consume")
    assert task.enabled and task.interval.every == 10
