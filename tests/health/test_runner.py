"""The runner: concurrency and timeouts, leases, history capped at five, pruning on edit and
delete, grace periods, and no leaked log streams."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from apps.health import leases, services
from apps.health.checks import Check, CheckOutcome, register
from apps.health.checks.logs import LogGrepCheck
from apps.health.models import RESULTS_KEPT, CheckResult, CheckStatus, HealthCheck
from apps.health.selectors import health_spec_statuses
from apps.health.services import (
    CheckExecution,
    health_check_results_write,
    health_checks_run_due,
    health_spec_apply,
    health_spec_delete,
    health_spec_run,
)
from apps.health.streams import STREAMS
from tests.factories.health import HealthSpecFactory, check_doc
from tests.health.targets import WAIT_LIMIT_S, http_server
from tests.utils.concurrency import run_at_once
from tests.utils.waiting import wait_for


@register
class LeaseStealingLogGrep(LogGrepCheck):
    """A streaming log grep during whose run another runner takes the lease over."""

    type_name = "test_lease_stealing_log_grep"

    def run(self):
        outcome = super().run()
        leases.client().set(leases.key(self.ctx.check_id), "another-runner", px=60_000)
        return outcome


@register
class SleepCheck(Check):
    """Sleeps `ms` milliseconds whatever its timeout: a check that overruns it."""

    type_name = "test_sleep"

    def run(self):
        time.sleep(self.params["ms"] / 1000)
        return CheckOutcome.success("slept")


# Gates of test_gated checks by name: a test opens one with GATES[name].set().
GATES: dict[str, threading.Event] = defaultdict(threading.Event)
ENDED: set[str] = set()


@register
class GatedCheck(Check):
    """Runs until the test opens its gate, whatever its timeout; records in ENDED when it returns."""

    type_name = "test_gated"

    def run(self):
        opened = GATES[self.params["gate"]].wait(WAIT_LIMIT_S)
        ENDED.add(self.params["gate"])
        return CheckOutcome.success("opened") if opened else CheckOutcome.error("the gate never opened")


@register
class ThreadNameCheck(Check):
    """Succeeds with the name of the thread it ran in."""

    type_name = "test_thread_name"

    def run(self):
        return CheckOutcome.success(threading.current_thread().name)


@pytest.fixture
def gate(request):
    """A closed gate of this test's own; opened at the end so no check thread outlives the test."""
    name = request.node.nodeid
    GATES.pop(name, None)
    ENDED.discard(name)
    yield name
    GATES[name].set()


def http_check(name: str, url: str, **fields) -> dict:
    return check_doc(name, "http", params={"url": url}, **fields)


@pytest.mark.django_db
def test_history_is_capped_at_five_newest_first():
    spec = HealthSpecFactory(checks=[check_doc("db"), check_doc("cache", "redis")])
    for _ in range(RESULTS_KEPT + 3):
        report = health_spec_run(spec_id=spec.id)
        assert report.ran == 2
    for check in spec.checks.all():
        results = list(check.results.all())
        assert len(results) == RESULTS_KEPT
        assert all(r.status == CheckStatus.SUCCESS for r in results)
        assert results == sorted(results, key=lambda r: (r.created_at, r.id), reverse=True)
    newest = CheckResult.objects.order_by("-id").values_list("id", flat=True)[:2 * RESULTS_KEPT]
    assert set(CheckResult.objects.values_list("id", flat=True)) == set(newest)


@pytest.mark.django_db
def test_checks_run_concurrently_and_a_slow_one_times_out_without_holding_the_spec(gate):
    with http_server() as (_, url):
        # The target answers /together/8 only once all eight requests are in at the same time.
        checks = [http_check(f"c{i}", f"{url}/together/8", timeout=WAIT_LIMIT_S + 10, interval=60)
                  for i in range(8)]
        checks.append(check_doc("hung", "test_gated", timeout=0.6, params={"gate": gate}))
        spec = HealthSpecFactory(checks=checks)
        report = health_spec_run(spec_id=spec.id)
    assert report.ran == 9
    assert gate not in ENDED  # the run ended while the hung check was still running
    statuses = dict(spec.checks.values_list("name", "last_status"))
    assert statuses.pop("hung") == CheckStatus.TIMEOUT
    assert set(statuses.values()) == {CheckStatus.SUCCESS}
    hung = CheckResult.objects.get(health_check__name="hung")
    assert hung.duration_ms == 600 and "within 0.6s" in hung.message


@pytest.mark.django_db
def test_large_runs_go_in_chunks_of_the_thread_limit(settings):
    settings.HEALTH_MAX_THREADS = 3
    spec = HealthSpecFactory(checks=[check_doc(f"c{i}", "test_thread_name") for i in range(7)])
    report = health_spec_run(spec_id=spec.id)
    assert report.ran == 7 and CheckResult.objects.count() == 7
    # Each chunk has a pool of its own with at most three threads, named by their index in the pool.
    threads = set(CheckResult.objects.values_list("message", flat=True))
    assert threads <= {"health-check_0", "health-check_1", "health-check_2"}, threads


@pytest.mark.django_db
def test_a_crashing_check_is_recorded_as_an_error():
    with http_server() as (_, url):
        pass
    spec = HealthSpecFactory(checks=[http_check("down", f"{url}/")])
    health_spec_run(spec_id=spec.id)
    result = CheckResult.objects.get()
    assert result.status == CheckStatus.ERROR and "ConnectError" in result.message


@pytest.mark.django_db
def test_run_due_follows_each_checks_interval():
    HealthSpecFactory(checks=[check_doc("fast", interval=5, timeout=1), check_doc("slow", interval=60)])
    now = timezone.now()
    assert health_checks_run_due(now=now).ran == 2
    assert health_checks_run_due(now=now + timedelta(seconds=1)).ran == 0
    assert health_checks_run_due(now=now + timedelta(seconds=6)).ran == 1
    assert health_checks_run_due(now=now + timedelta(seconds=61)).ran == 2
    assert CheckResult.objects.filter(health_check__name="fast").count() == 3


@pytest.mark.django_db
def test_disabled_specs_do_not_run_and_run_at_once_when_enabled_again():
    spec = HealthSpecFactory(name="paused", checks=[check_doc("db")], enabled=False)
    HealthCheck.objects.update(next_run_at=timezone.now() + timedelta(hours=1))
    assert health_checks_run_due().ran == 0
    health_spec_apply(name="paused", document=spec.document, enabled=True)
    assert health_checks_run_due().ran == 1


@pytest.mark.django_db
def test_removing_a_check_deletes_it_with_its_results_and_redefining_one_starts_it_over():
    doc = [check_doc("db"), check_doc("cache", "redis"), check_doc("gone", "redis")]
    spec = HealthSpecFactory(name="edit", checks=doc)
    health_spec_run(spec_id=spec.id)
    assert CheckResult.objects.count() == 3
    ids = dict(spec.checks.values_list("name", "id"))

    _, action = health_spec_apply(name="edit", document={"checks": [
        check_doc("db", interval=45),  # only the cadence changed: history kept
        check_doc("cache", "redis", params={"url": "redis://127.0.0.1:1/0"}),  # redefined: starts over
    ]})
    assert action == "updated"
    assert not HealthCheck.objects.filter(id=ids["gone"]).exists()
    assert not CheckResult.objects.filter(health_check_id=ids["gone"]).exists()
    assert CheckResult.objects.filter(health_check_id=ids["db"]).count() == 1
    assert HealthCheck.objects.get(id=ids["db"]).interval_s == 45
    cache = HealthCheck.objects.get(id=ids["cache"])  # same row, fresh history
    assert cache.last_status == "" and not cache.results.exists()


@pytest.mark.django_db
def test_deleting_a_spec_deletes_its_checks_and_results():
    spec = HealthSpecFactory(checks=[check_doc("db")])
    other = HealthSpecFactory(checks=[check_doc("db")])
    health_spec_run(spec_id=spec.id)
    health_spec_run(spec_id=other.id)
    health_spec_delete(spec=spec)
    assert not HealthCheck.objects.filter(spec_id=spec.id).exists()
    assert CheckResult.objects.count() == 1 and CheckResult.objects.get().health_check.spec_id == other.id


@pytest.mark.django_db
def test_failures_inside_the_grace_period_are_shown_but_leave_the_spec_pending():
    spec = HealthSpecFactory(name="graceful", checks=[
        check_doc("port", "tcp", grace_period=60, params={"host": "127.0.0.1", "port": 1})])
    health_spec_run(spec_id=spec.id)
    result = CheckResult.objects.get()
    assert result.status == CheckStatus.FAILURE and result.in_grace
    assert health_spec_statuses()["graceful"] == "pending"
    # Once the window has passed, the same failure fails the spec.
    HealthCheck.objects.update(grace_started_at=timezone.now() - timedelta(seconds=61))
    health_spec_run(spec_id=spec.id)
    assert health_spec_statuses()["graceful"] == "failure"
    assert not CheckResult.objects.order_by("-id").first().in_grace


# Leases --------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_check_leased_by_another_runner_is_skipped():
    spec = HealthSpecFactory(checks=[check_doc("db"), check_doc("cache", "redis")])
    db = spec.checks.get(name="db")
    leases.client().set(leases.key(db.id), "other-runner", px=60_000)
    report = health_spec_run(spec_id=spec.id)
    assert (report.ran, report.leased_elsewhere) == (1, 1)
    assert not db.results.exists()
    # The lease is released after a run, so the next run can take it.
    assert leases.client().get(leases.key(spec.checks.get(name="cache").id)) is None


@pytest.mark.django_db
def test_a_runner_that_died_holding_a_lease_blocks_the_check_only_until_the_lease_expires():
    spec = HealthSpecFactory(checks=[check_doc("db")])
    check = spec.checks.get()
    key = leases.key(check.id)
    leases.client().set(key, "crashed-worker", px=60_000)  # its process is gone
    assert health_checks_run_due().ran == 0
    leases.client().pexpire(key, 1)  # time passes
    wait_for(lambda: leases.client().get(key) is None, "the lease to expire")
    assert health_checks_run_due().ran == 1  # nothing orphaned: the next tick picks the check up
    assert check.results.count() == 1


@pytest.mark.django_db
def test_a_quick_check_run_beside_a_slow_one_keeps_its_lease_until_the_chunk_is_done(monkeypatch):
    # Leases are confirmed once the whole chunk is done: a lease sized on the quick check's own
    # timeout would have expired by then, and its result would be thrown away.
    # A lease sized on the quick check alone would last 0.3 s: the slow one runs 0.7 s, yet well
    # within its own 10 s timeout on a busy machine.
    monkeypatch.setattr(services, "LEASE_RUN_MARGIN_MS", 100)
    spec = HealthSpecFactory(checks=[check_doc("quick", timeout=0.2),
                                     check_doc("slow", "test_sleep", timeout=10, params={"ms": 700})])
    report = health_spec_run(spec_id=spec.id)
    assert (report.ran, report.discarded) == (2, 0)
    assert set(spec.checks.values_list("last_status", flat=True)) == {CheckStatus.SUCCESS}


@pytest.mark.django_db
def test_a_timed_out_check_keeps_its_lease_while_its_thread_runs_and_frees_it_when_it_ends(gate):
    spec = HealthSpecFactory(checks=[check_doc("overrun", "test_gated", timeout=0.3, params={"gate": gate})])
    check = spec.checks.get()
    key = leases.key(check.id)
    report = health_spec_run(spec_id=spec.id)
    assert report.ran == 1 and check.results.get().status == CheckStatus.TIMEOUT
    # Its thread still runs: no second run may start meanwhile.
    assert health_spec_run(spec_id=spec.id).leased_elsewhere == 1
    assert leases.client().pttl(key) > 0
    GATES[gate].set()
    # Freed when the thread ends, long before the lease would expire (15 s).
    wait_for(lambda: leases.client().get(key) is None, "the lease to be released", timeout=10)
    assert health_spec_run(spec_id=spec.id).ran == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("change", ["redefine", "delete"])
def test_an_edit_or_delete_waits_for_a_runner_writing_results_and_leaves_no_stale_one(change):
    spec = HealthSpecFactory(name="race", checks=[check_doc("cache", "redis")])
    check = spec.checks.get()
    writing, finish, errors = threading.Event(), threading.Event(), []

    def runner():
        # What a runner does: lock the check, insert its result, update it; here it then pauses.
        try:
            with transaction.atomic():
                execution = CheckExecution(CheckOutcome.success("old definition"), 1.0)
                health_check_results_write(checks=[check], executions={check.id: execution},
                                           now=timezone.now())
                writing.set()
                finish.wait(10)
        finally:
            connections.close_all()

    def editor():
        try:
            if change == "redefine":
                health_spec_apply(name="race", document={"checks": [
                    check_doc("cache", "redis", params={"url": "redis://127.0.0.1:1/0"})]})
            else:
                health_spec_delete(spec=spec)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=runner), threading.Thread(target=editor)]
    threads[0].start()
    assert writing.wait(10)
    threads[1].start()
    wait_for(lambda: _backends_waiting_for_a_lock() == 1, "the editor to wait for the runner's lock")
    assert threads[1].is_alive()
    finish.set()
    for t in threads:
        t.join(10)
    assert errors == []
    if change == "redefine":
        check.refresh_from_db()
        assert check.params == {"url": "redis://127.0.0.1:1/0"} and check.last_status == ""
        assert not check.results.exists()  # the old definition's result went with the edit
    else:
        assert not HealthCheck.objects.exists() and not CheckResult.objects.exists()


def _backends_waiting_for_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity"
                       " WHERE datname = current_database() AND wait_event_type = 'Lock'")
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_two_runners_at_once_run_each_check_exactly_once():
    with http_server() as (server, url):
        spec = HealthSpecFactory(checks=[http_check(f"c{i}", f"{url}/sleep/400") for i in range(6)])
        reports = run_at_once(lambda: health_spec_run(spec_id=spec.id), 2)
        hits = len(server.hits)
    assert sum(r.ran for r in reports) == 6
    assert sum(r.leased_elsewhere for r in reports) == 6
    assert hits == 6  # the HTTP target itself saw each check once
    assert sorted(HealthCheck.objects.values_list("results__health_check_id", flat=True)) == sorted(
        spec.checks.values_list("id", flat=True))


# Streams -------------------------------------------------------------------------------------

def _offset(check: HealthCheck) -> int:
    """The log offset a host-local check saved for this host (state is kept per host)."""
    return check.state["hosts"][settings.CASEHUB_HOST_NAME]["offset"]


def stream_check(name: str, path, type_: str = "log_grep") -> dict:
    return check_doc(name, type_, params={"path": str(path), "pattern": "ERROR", "stream": True,
                                          "start": "beginning"})


@pytest.mark.django_db
def test_a_stream_stays_open_between_runs_and_is_closed_when_its_check_is_removed(
        tmp_path, django_capture_on_commit_callbacks):
    log = tmp_path / "app.log"
    log.write_text("ERROR a\n")
    spec = HealthSpecFactory(name="logs", checks=[stream_check("errors", log), check_doc("db")])
    check = spec.checks.get(name="errors")
    health_spec_run(spec_id=spec.id)
    handle, first_token = STREAMS._streams[check.id].handle, STREAMS.token_of(check.id)
    with log.open("a") as f:
        f.write("ERROR b\nINFO c\n")
    health_spec_run(spec_id=spec.id)
    assert STREAMS._streams[check.id].handle is handle  # the same open file...
    assert STREAMS.token_of(check.id) not in (None, first_token)  # ...now under this run's lease
    check.refresh_from_db()
    assert _offset(check) == log.stat().st_size and check.last_status == CheckStatus.FAILURE
    assert check.results.first().message.startswith("2 match")

    with django_capture_on_commit_callbacks(execute=True):
        health_spec_apply(name="logs", document={"checks": [check_doc("db")]})
    assert check.id not in STREAMS and handle.closed


@pytest.mark.django_db
def test_a_restarted_process_resumes_a_log_from_the_stored_offset(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("ERROR a\n")
    spec = HealthSpecFactory(checks=[stream_check("errors", log)])
    health_spec_run(spec_id=spec.id)
    STREAMS.close_all()  # the process restarts: its open streams are gone, the database is not
    with log.open("a") as f:
        f.write("ERROR b\n")
    health_spec_run(spec_id=spec.id)
    # "a" is counted once (read again from the start, it would make 3).
    assert spec.checks.get().results.first().message.startswith("2 match")


@pytest.mark.django_db
def test_a_stream_is_closed_when_its_spec_is_deleted(tmp_path, django_capture_on_commit_callbacks):
    log = tmp_path / "app.log"
    log.write_text("")
    spec = HealthSpecFactory(checks=[stream_check("errors", log)])
    health_spec_run(spec_id=spec.id)
    assert len(STREAMS) == 1
    with django_capture_on_commit_callbacks(execute=True):
        health_spec_delete(spec=spec)
    assert len(STREAMS) == 0


@pytest.mark.django_db
def test_streams_of_checks_deleted_by_another_process_are_swept(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    spec = HealthSpecFactory(checks=[stream_check("errors", log)])
    health_spec_run(spec_id=spec.id)
    handle = next(iter(STREAMS._streams.values())).handle
    HealthCheck.objects.all().delete()  # as another process would, without this process's registry
    health_checks_run_due()
    assert len(STREAMS) == 0 and handle.closed


@pytest.mark.django_db
def test_a_stream_is_closed_when_another_runner_holds_the_lease(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    spec = HealthSpecFactory(checks=[stream_check("errors", log)])
    check = spec.checks.get()
    health_spec_run(spec_id=spec.id)
    assert check.id in STREAMS
    leases.client().set(leases.key(check.id), "other-runner", px=60_000)
    report = health_spec_run(spec_id=spec.id)
    assert report.leased_elsewhere == 1 and check.id not in STREAMS


@pytest.mark.django_db
def test_losing_the_lease_mid_run_discards_the_result_and_closes_the_stream(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("ERROR a\n")
    spec = HealthSpecFactory(checks=[stream_check("errors", log, "test_lease_stealing_log_grep"),
                                     check_doc("db")])
    report = health_spec_run(spec_id=spec.id)
    assert (report.ran, report.discarded) == (1, 1)
    stolen = spec.checks.get(name="errors")
    assert not stolen.results.exists() and stolen.state == {} and stolen.id not in STREAMS
    # The other runner's lease is left alone.
    assert leases.client().get(leases.key(stolen.id)) == b"another-runner"


@pytest.mark.django_db
@pytest.mark.parametrize("stream", [False, True])
def test_a_log_being_written_while_checks_run_counts_every_line_once(tmp_path, stream):
    log = tmp_path / "app.log"
    log.write_text("")
    params = {"path": str(log), "pattern": "ERROR", "threshold": 10_000, "window_s": 3600,
              "start": "beginning", "stream": stream}
    spec = HealthSpecFactory(checks=[check_doc("errors", "log_grep", params=params)])
    written = threading.Event()

    def writer():
        with log.open("a") as f:
            for i in range(400):
                # Lines are written in two halves, so runs often see a half-written line.
                f.write(f"{'ERROR' if i % 2 else 'INFO'} line {i} ")
                f.flush()
                f.write("end\n")
                f.flush()
                if i % 50 == 0:
                    time.sleep(0.01)
        written.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not written.is_set():
        health_spec_run(spec_id=spec.id)
    thread.join()
    health_spec_run(spec_id=spec.id)
    check = spec.checks.get()
    assert check.results.first().message.startswith("200 match")
    assert _offset(check) == log.stat().st_size
