"""The exact health schedule: each check runs once per interval on its own grid, however many are
due and whatever the interval (real worker and beat processes), a result never moves a schedule
back, and checks that read local files run only on the host they are pinned to."""

from __future__ import annotations

import importlib
import math
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from apps.core.errors import ApplicationError
from apps.health import leases
from apps.health.checks import CheckOutcome
from apps.health.models import CheckResult, HealthCheck
from apps.health.services import (
    CheckExecution,
    health_check_results_write,
    health_checks_run_due,
    health_spec_apply,
    health_spec_run,
)
from tests.factories.health import HealthSpecFactory, check_doc
from tests.health.targets import tcp_listener
from tests.utils.concurrency import run_at_once
from tests.utils.processes import celery_beat, celery_worker

WINDOW_S = 60
TICK_S = 1  # the beat schedule's period (migration 0004)
# Scheduling noise on a busy machine on top of the tick: claiming, a worker process free for the task.
TOLERANCE_S = 1.5


def tcp_check(name: str, port: int, interval: float) -> dict:
    return check_doc(name, "tcp", interval=interval, timeout=1, params={"host": "127.0.0.1", "port": port})


def _grid_offset(check: HealthCheck, anchor, at) -> float:
    """How far `at` is from the check's grid (anchor + k * interval), in seconds."""
    steps = (at - anchor).total_seconds() / check.interval_s
    return abs(steps - round(steps)) * check.interval_s


def _health_tick_only() -> None:
    """The health tick as its migrations define it, and no other schedule: a transactional test
    before this one may have flushed the migrated rows."""
    created = importlib.import_module("apps.health.migrations.0002_beat_schedule")
    ticked = importlib.import_module("apps.health.migrations.0004_exact_schedule")
    created.create_schedule(django_apps, None)
    ticked.set_tick(TICK_S)(django_apps, None)
    PeriodicTask.objects.exclude(name=created.TASK_NAME).update(enabled=False)


@pytest.mark.slow
def test_checks_of_5_6_and_7_s_and_300_due_together_each_run_once_per_interval(transactional_db,
                                                                                redis_client):
    _health_tick_only()
    with tcp_listener() as listener:
        with celery_worker(["health"], concurrency=2), celery_beat(max_interval=1):
            exact = HealthSpecFactory(name="exact", checks=[
                tcp_check(f"every-{i}", listener.port, i) for i in (5, 6, 7)])
            # More than HEALTH_MAX_THREADS (256), all due at the same instants.
            many = HealthSpecFactory(name="many", checks=[
                tcp_check(f"c{i:03d}", listener.port, 5) for i in range(300)])
            checks = {c.id: c for c in HealthCheck.objects.filter(spec__in=[exact, many])}
            # Where each grid starts: creation (a tick may have claimed some checks already).
            anchors = {cid: c.grace_started_at for cid, c in checks.items()}
            runs: dict[int, list] = defaultdict(list)
            schedules: dict[int, list] = defaultdict(list)
            last_seen = 0

            def observe() -> None:
                nonlocal last_seen
                # Results are pruned to five per check: read them as they come (each lives 25 s or more).
                for rid, cid, at in (CheckResult.objects.filter(id__gt=last_seen).order_by("id")
                                     .values_list("id", "health_check_id", "created_at")):
                    runs[cid].append(at)
                    last_seen = rid
                for cid, next_run_at in HealthCheck.objects.values_list("id", "next_run_at"):
                    schedules[cid].append(next_run_at)

            end = min(anchors.values()) + timedelta(seconds=WINDOW_S)
            while timezone.now() < end:
                observe()
                time.sleep(0.5)  # sampling over a fixed window: there is no event to wait for
        # Beat stopped, and the worker finished its tasks before exiting (warm shutdown).
        observe()
        connections = listener.drain()

    assert sum(len(at) for at in runs.values()) == connections, "a check ran without its result being written"
    for cid, check in checks.items():
        anchor, interval = anchors[cid], check.interval_s
        times = sorted(runs[cid])
        in_window = [at for at in times if at <= anchor + timedelta(seconds=WINDOW_S)]
        expected = math.floor(WINDOW_S / interval)
        assert expected - 1 <= len(in_window) <= expected + 1, (check.name, len(in_window), expected)
        # Once per interval: no two runs in one slot of the check's grid...
        slots = [math.floor((at - anchor).total_seconds() / interval) for at in times]
        assert len(slots) == len(set(slots)), (check.name, slots)
        # ...each on time within the tick, so the schedule does not slip run after run.
        gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
        assert all(abs(gap - interval) <= TICK_S + TOLERANCE_S for gap in gaps), (check.name, gaps)
        assert abs(sum(gaps) / len(gaps) - interval) < 0.5, (check.name, gaps)
        # The schedule only moves forward, on the check's own grid.
        seen = schedules[cid]
        assert seen == sorted(seen), (check.name, seen)
        assert all(_grid_offset(check, anchor, at) < 0.001 for at in seen), (check.name, seen)


# The claim -------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_check_far_behind_runs_once_and_its_next_run_is_the_next_point_of_its_grid():
    spec = HealthSpecFactory(checks=[check_doc("db", interval=7, timeout=1)])
    check = spec.checks.get()
    anchor = check.next_run_at - timedelta(seconds=100)  # a runner was down for 100 s
    HealthCheck.objects.filter(id=check.id).update(next_run_at=anchor)
    now = timezone.now()
    assert health_checks_run_due(now=now).ran == 1
    check.refresh_from_db()
    assert now < check.next_run_at <= now + timedelta(seconds=7)
    assert _grid_offset(check, anchor, check.next_run_at) < 0.001
    assert health_checks_run_due(now=now).ran == 0  # not once per missed interval


@pytest.mark.django_db
def test_a_late_tick_does_not_shift_the_next_run():
    spec = HealthSpecFactory(checks=[check_doc("db", interval=5, timeout=1)])
    due = spec.checks.get().next_run_at
    health_checks_run_due(now=due + timedelta(seconds=0.9))  # picked up almost a tick late
    assert spec.checks.get().next_run_at == due + timedelta(seconds=5)


@pytest.mark.django_db
def test_more_due_checks_than_threads_run_once_each_in_one_tick(settings):
    settings.HEALTH_MAX_THREADS = 3
    spec = HealthSpecFactory(checks=[check_doc(f"c{i}", interval=30) for i in range(7)])
    due = dict(spec.checks.values_list("id", "next_run_at"))
    now = timezone.now()
    assert health_checks_run_due(now=now).ran == 7
    assert health_checks_run_due(now=now).ran == 0
    assert CheckResult.objects.count() == 7
    assert {c.id: c.next_run_at - due[c.id] for c in spec.checks.all()} == {
        cid: timedelta(seconds=30) for cid in due}


@pytest.mark.django_db(transaction=True)
def test_runners_at_once_split_the_due_set_and_run_each_check_once(settings):
    settings.HEALTH_MAX_THREADS = 4
    spec = HealthSpecFactory(checks=[check_doc(f"c{i}", "redis", interval=30) for i in range(10)])
    reports = run_at_once(health_checks_run_due, 3)
    assert sum(r.ran for r in reports) == 10
    assert sorted(CheckResult.objects.values_list("health_check_id", flat=True)) == sorted(
        spec.checks.values_list("id", flat=True))


@pytest.mark.django_db
def test_a_result_of_an_older_claim_is_discarded_and_leaves_the_schedule_alone():
    spec = HealthSpecFactory(checks=[check_doc("db", interval=5, timeout=1)])
    stale = spec.checks.get()  # as a runner held it before the claim below
    health_checks_run_due()
    before = HealthCheck.objects.get(id=stale.id)
    late = CheckExecution(CheckOutcome.failure("from the older claim"), 1.0)
    assert health_check_results_write(checks=[stale], executions={stale.id: late}, now=timezone.now()) == []
    after = HealthCheck.objects.get(id=stale.id)
    assert (after.next_run_at, after.last_status, after.claim) == (
        before.next_run_at, before.last_status, before.claim)
    assert after.claim == stale.claim + 1 and after.next_run_at > stale.next_run_at
    assert CheckResult.objects.count() == 1 and not CheckResult.objects.filter(status="failure").exists()


@pytest.mark.django_db
def test_run_now_leaves_the_schedule_alone():
    spec = HealthSpecFactory(checks=[check_doc("db", interval=60)])
    due = spec.checks.get().next_run_at
    assert health_spec_run(spec_id=spec.id).ran == 1
    assert spec.checks.get().next_run_at == due


@pytest.mark.django_db
def test_a_check_leased_elsewhere_stays_due_and_runs_once_the_lease_ends():
    spec = HealthSpecFactory(checks=[check_doc("db", interval=60)])
    check = spec.checks.get()
    leases.client().set(leases.key(check.id), "run-now-elsewhere", px=60_000)
    report = health_checks_run_due()
    assert (report.ran, report.leased_elsewhere) == (0, 1)
    assert spec.checks.get().next_run_at == check.next_run_at
    leases.client().delete(leases.key(check.id))
    assert health_checks_run_due().ran == 1


# Host pinning ----------------------------------------------------------------------------------

def log_check(path, **fields) -> dict:
    return check_doc("errors", "log_grep", params={"path": str(path), "pattern": "ERROR"}, **fields)


@pytest.mark.django_db
def test_a_log_grep_is_pinned_to_the_host_it_was_declared_on(settings, tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    settings.CASEHUB_HOST_NAME = "web-1"
    spec = HealthSpecFactory(name="logs", checks=[log_check(log), check_doc("db")])
    assert dict(spec.checks.values_list("name", "host")) == {"errors": "web-1", "db": ""}

    settings.CASEHUB_HOST_NAME = "worker-2"
    assert health_checks_run_due().ran == 1  # the database check only
    assert health_spec_run(spec_id=spec.id).ran == 1
    # Applied again from this host, the check stays where it was declared.
    health_spec_apply(name="logs", document={"checks": [log_check(log, interval=60), check_doc("db")]})
    assert spec.checks.get(name="errors").host == "web-1"

    settings.CASEHUB_HOST_NAME = "web-1"
    HealthCheck.objects.update(next_run_at=timezone.now())
    assert health_checks_run_due().ran == 2


@pytest.mark.django_db
def test_the_spec_names_the_host_of_any_check(settings):
    settings.CASEHUB_HOST_NAME = "web-1"
    spec = HealthSpecFactory(checks=[check_doc("db", host="db-host"), check_doc("cache", "redis")])
    assert dict(spec.checks.values_list("name", "host")) == {"db": "db-host", "cache": ""}
    assert health_checks_run_due().ran == 1
    settings.CASEHUB_HOST_NAME = "db-host"
    assert health_checks_run_due().ran == 1


@pytest.mark.django_db
def test_defaults_name_the_host_and_a_bad_host_name_is_refused():
    spec, _ = health_spec_apply(name="pinned", document={
        "defaults": {"host": "web-1"},
        "checks": [check_doc("db"), check_doc("cache", "redis", host="web-2")],
    })
    assert dict(spec.checks.values_list("name", "host")) == {"db": "web-1", "cache": "web-2"}
    with pytest.raises(ApplicationError) as caught:
        health_spec_apply(name="bad", document={"checks": [check_doc("db", host="web 1")]})
    assert "checks.0.host" in caught.value.errors


@pytest.mark.django_db
def test_a_log_offset_is_kept_per_host(settings, tmp_path):
    log = tmp_path / "app.log"
    log.write_text("ERROR a\n")
    settings.CASEHUB_HOST_NAME = "web-1"
    doc = {"start": "beginning", "threshold": 100}
    spec = HealthSpecFactory(name="logs", checks=[
        check_doc("errors", "log_grep", host="web-1", params={"path": str(log), "pattern": "ERROR", **doc})])
    health_spec_run(spec_id=spec.id)
    size_on_web_1 = log.stat().st_size

    with log.open("a") as f:
        f.write("ERROR b\n")
    # Moved to another host: it starts on that host's own file, web-1's offset is kept.
    settings.CASEHUB_HOST_NAME = "web-2"
    health_spec_apply(name="logs", document={"checks": [
        check_doc("errors", "log_grep", host="web-2", params={"path": str(log), "pattern": "ERROR", **doc})]})
    health_spec_run(spec_id=spec.id)
    check = spec.checks.get()
    assert check.results.first().message.startswith("2 match")  # read from its start on web-2
    assert {host: s["offset"] for host, s in check.state["hosts"].items()} == {
        "web-1": size_on_web_1, "web-2": log.stat().st_size}

    # Back on web-1: it resumes from web-1's own offset ("b" only, "a" is not read again).
    settings.CASEHUB_HOST_NAME = "web-1"
    health_spec_apply(name="logs", document={"checks": [
        check_doc("errors", "log_grep", host="web-1", params={"path": str(log), "pattern": "ERROR", **doc})]})
    health_spec_run(spec_id=spec.id)
    assert spec.checks.get().state["hosts"]["web-1"]["offset"] == log.stat().st_size
    assert spec.checks.get().results.first().message.startswith("2 match")  # a (earlier) + b on web-1
