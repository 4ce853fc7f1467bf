"""The CaseEvent change feed: ordered, exactly-once consumers; the writer fence; the metrics rollup."""

import threading

import pytest
from django.db import connection, transaction

from apps.cases import metrics, services
from apps.cases.models import Case, CaseEvent, CaseStats, Queue, Status
from apps.core import feed
from apps.core.models import FeedCursor
from tests.factories.accounts import AgentFactory
from tests.factories.cases import QueueFactory, make_case
from tests.utils.waiting import wait_for


@pytest.mark.django_db
def test_consumer_reads_in_order_once_and_stores_its_position():
    queue = QueueFactory(slug="general")
    cases = [make_case(queue=queue) for _ in range(5)]
    services.case_add_note(case=cases[0], body="hi")
    seen: list[int] = []
    assert feed.feed_consume("test", lambda batch: seen.extend(e.id for e in batch),
                             model=CaseEvent, batch_size=2) == 6
    assert seen == sorted(seen) and len(seen) == 6
    assert FeedCursor.objects.get(name="test").position == seen[-1]
    assert feed.feed_consume("test", lambda batch: seen.extend(e.id for e in batch), model=CaseEvent) == 0
    services.case_add_note(case=cases[1], body="again")
    assert feed.feed_consume("test", lambda batch: seen.extend(e.id for e in batch), model=CaseEvent) == 1
    assert len(seen) == len(set(seen)) == 7


@pytest.mark.django_db
def test_a_failing_handler_does_not_advance_the_position():
    make_case(queue=QueueFactory(slug="general"))

    def broken(batch):
        CaseStats.objects.all().delete()
        raise ValueError("handler bug")

    with pytest.raises(ValueError):
        feed.feed_consume("fragile", broken, model=CaseEvent)
    assert FeedCursor.objects.get(name="fragile").position == 0
    assert feed.feed_consume("fragile", lambda batch: None, model=CaseEvent) == 1


# Bounds on waiting for another thread or process: only a hang reaches them, however loaded
# the machine; nothing is asserted about how long anything takes.
HANG = 120.0


def waits_for_advisory_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT wait_event_type, wait_event FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone() == ("Lock", "advisory")


@pytest.mark.django_db(transaction=True)
def test_fence_never_skips_an_event_of_a_slower_transaction(monkeypatch):
    """An open writer holds an id lower than a committed one: the consumer waits for it."""
    # The consumer waits as long as the writer stays open, not FENCE_TIMEOUT_MS: a slow machine
    # must not turn the wait into a skipped round.
    monkeypatch.setattr(feed, "FENCE_TIMEOUT_MS", HANG * 1000)
    queue = QueueFactory(slug="general")
    case_a, case_b = make_case(queue=queue), make_case(queue=queue)
    services.case_metrics_rollup()  # consume the created events
    written, release = threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                services.case_add_note(case=case_a, body="slow")  # takes the lower id
                written.set()
                release.wait(HANG)
        finally:
            connection.close()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    seen: list[tuple[int, str]] = []
    consumer_pid: list[int] = []

    def consume():
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                consumer_pid.append(cursor.fetchone()[0])
            feed.feed_consume("fence", lambda batch: seen.extend((e.id, e.data["body"]) for e in batch),
                              model=CaseEvent, queryset=CaseEvent.objects.filter(kind="note"))
        finally:
            connection.close()

    consumer = threading.Thread(target=consume)
    try:
        assert written.wait(HANG)
        services.case_add_note(case=case_b, body="fast")  # higher id, committed first
        consumer.start()
        wait_for(lambda: consumer_pid and waits_for_advisory_lock(consumer_pid[0]),
                 "the consumer to queue behind the open writer")
        assert seen == []  # blocked behind the open writer instead of reading past its id
    finally:
        release.set()
        writer.join(HANG)
        if consumer.ident is not None:
            consumer.join(HANG)
    assert [body for _, body in seen] == ["slow", "fast"]
    assert seen[0][0] < seen[1][0]


@pytest.mark.django_db(transaction=True)
def test_fence_skips_the_round_when_a_writer_stays_open(monkeypatch):
    queue = QueueFactory(slug="general")
    case = make_case(queue=queue)
    monkeypatch.setattr(feed, "FENCE_TIMEOUT_MS", 200)
    written, release = threading.Event(), threading.Event()

    def writer():
        try:
            with transaction.atomic():
                services.case_add_note(case=case, body="long")
                written.set()
                release.wait(HANG)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert written.wait(HANG)
        assert feed.feed_high_water_mark(CaseEvent) is None
        assert feed.feed_consume("skipper", lambda batch: None, model=CaseEvent) == 0
    finally:
        release.set()
        thread.join(HANG)
    assert feed.feed_consume("skipper", lambda batch: None, model=CaseEvent) == 2


@pytest.mark.django_db
def test_metrics_rollup_computes_handle_time_and_first_contact_resolution():
    queue = QueueFactory(slug="refunds")
    agent = AgentFactory()
    quick = make_case(queue=queue)
    services.case_assign(case=quick, agent=agent)
    services.case_add_message(case=quick, body="Refunded.")
    services.case_transition(case=quick, to_status=Status.RESOLVED)
    slow = make_case(queue=queue)
    services.case_add_message(case=slow, body="Looking")
    services.case_add_message(case=slow, body="Still looking")
    services.case_transition(case=slow, to_status=Status.RESOLVED)
    reopened = make_case(queue=queue)
    services.case_transition(case=reopened, to_status=Status.RESOLVED)
    services.case_transition(case=reopened, to_status=Status.REOPENED)
    services.case_transition(case=reopened, to_status=Status.RESOLVED)
    make_case(queue=queue)  # open, not resolved

    assert feed.feed_lag(services.CASE_METRICS_CONSUMER, model=CaseEvent) >= CaseEvent.objects.count() > 0
    processed = services.case_metrics_rollup()
    assert processed == CaseEvent.objects.count()
    stats = {s.case_id: s for s in CaseStats.objects.all()}
    assert len(stats) == 4
    assert stats[quick.pk].first_contact_resolution is True and stats[quick.pk].outbound_messages == 1
    assert stats[quick.pk].first_response_at is not None and stats[quick.pk].handle_seconds >= 0
    assert stats[slow.pk].first_contact_resolution is False
    assert stats[reopened.pk].first_contact_resolution is False and stats[reopened.pk].reopen_count == 1
    assert services.case_metrics_rollup() == 0  # idempotent: nothing read twice
    assert CaseStats.objects.get(pk=quick.pk).outbound_messages == 1

    # The /metrics gauges read the support metrics rollups (apps.cases.metric_definitions): FCR
    # counts decided cases only, so slow (two replies) and reopened fail while quick's window is
    # still open; AHT starts at acceptance, so only quick (assigned) has one.
    services.metric_rollups_consume()
    [(slug, handle, fcr, resolved)] = metrics.resolution_stats()
    assert slug == "refunds" and resolved == 3 and fcr == 0.0 and handle >= 0
    assert ("refunds", "new", 1) in metrics.backlog()
    families = {f.name: f for f in metrics.collect()}
    assert families["casehub_case_first_contact_resolution_ratio"].samples[0].value == 0.0
    assert {s.value for s in families["casehub_feed_lag_events"].samples} == {0}
    assert {s.labels["status"]: s.value for s in families["casehub_cases_open"].samples} == {"new": 1}


@pytest.mark.slow
def test_beat_task_runs_on_a_real_worker(celery_worker):
    from apps.cases.tasks import case_metrics_rollup

    queue = QueueFactory(slug="general")
    case = make_case(queue=queue)
    services.case_transition(case=case, to_status=Status.RESOLVED)
    case_metrics_rollup.delay()
    wait_for(CaseStats.objects.filter(pk=case.pk, resolved_at__isnull=False).exists,
             "the worker to roll the events up")
    assert FeedCursor.objects.get(name=services.CASE_METRICS_CONSUMER).position == CaseEvent.objects.last().id


@pytest.mark.django_db
def test_beat_schedule_exists_after_migrate():
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="apps.cases.tasks.case_metrics_rollup")
    assert task.enabled and task.interval.every == 10


@pytest.mark.django_db
def test_fence_leaves_the_callers_lock_timeout_alone():
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '7s'")
        assert feed.feed_high_water_mark(CaseEvent) == 0
        cursor.execute("SHOW lock_timeout")
        assert cursor.fetchone()[0] == "7s"


@pytest.mark.django_db
def test_sla_breaches_per_queue():
    from datetime import timedelta

    from django.utils import timezone

    queue = QueueFactory(slug="sla", config__sla={"first_response_minutes": 30, "resolution_minutes": 120})
    QueueFactory(slug="no-sla", config__sla={})
    old = make_case(queue=queue)
    older = make_case(queue=queue)
    make_case(queue=queue)  # fresh: within both targets
    answered = make_case(queue=queue)
    services.case_add_message(case=answered, body="hi")
    now = timezone.now()
    Case.objects.filter(pk__in=[old.pk, answered.pk]).update(created_at=now - timedelta(minutes=45))
    Case.objects.filter(pk=older.pk).update(created_at=now - timedelta(hours=3))
    make_case(queue=Queue.objects.get(slug="no-sla"))
    assert metrics.sla_breaches() == [("no-sla", 0, 0), ("sla", 2, 1)]
    families = {f.name: f for f in metrics.collect()}
    values = {(s.labels["queue"], s.labels["target"]): s.value
              for s in families["casehub_cases_sla_breached"].samples}
    assert values[("sla", "first_response")] == 2 and values[("sla", "resolution")] == 1


@pytest.mark.django_db
def test_metrics_consumer_is_idempotent_when_events_are_fed_again():
    """Exactly-once comes from the cursor; the handler is idempotent on its own too: a batch
    handled twice, or the whole feed replayed after a cursor reset, counts each event once."""
    queue = QueueFactory(slug="refunds")
    case = make_case(queue=queue)
    services.case_add_message(case=case, body="one")
    services.case_add_message(case=case, body="two")
    services.case_transition(case=case, to_status=Status.RESOLVED)
    services.case_transition(case=case, to_status=Status.REOPENED)
    services.case_metrics_rollup()

    def snapshot():
        row = CaseStats.objects.get(pk=case.pk)
        return (row.outbound_messages, row.reopen_count, row.resolved_at, row.first_contact_resolution,
                row.last_event_id)

    first = snapshot()
    assert first[:2] == (2, 1) and first[4] == CaseEvent.objects.filter(case=case).last().id
    batch = list(CaseEvent.objects.order_by("id"))
    services.case_stats_fold(batch)
    services.case_stats_fold(batch[2:])
    assert snapshot() == first
    FeedCursor.objects.filter(name=services.CASE_METRICS_CONSUMER).update(position=0)
    assert services.case_metrics_rollup() == len(batch)
    assert snapshot() == first
