"""With a live Celery worker: the celery_workers check, the beat task running due checks, and a worker
killed in the middle of a run."""

from __future__ import annotations

import os
import signal

import pytest
from django_celery_beat.models import PeriodicTask

from apps.health import leases, tasks
from apps.health.checks import REGISTRY
from apps.health.checks.base import CheckContext
from apps.health.models import CheckResult, CheckStatus
from apps.health.services import health_spec_run
from tests.factories.health import HealthSpecFactory, check_doc
from tests.health.targets import http_server
from tests.utils.processes import celery_worker as start_worker
from tests.utils.waiting import wait_for


def _celery_check(queues, grace=0.0):
    ctx = CheckContext(check_id=1, name="workers", params={"queues": queues}, timeout_s=3,
                       grace_period_s=grace)
    return REGISTRY["celery_workers"](ctx).run()


@pytest.mark.slow
def test_celery_workers_check_against_a_live_worker(celery_worker):
    spec = HealthSpecFactory(name="workers", checks=[
        check_doc("queues", "celery_workers", params={"queues": ["health", "default"]}),
        check_doc("missing", "celery_workers", params={"queues": ["health", "nowhere"]}),
    ])
    health_spec_run(spec_id=spec.id)
    results = {r.health_check.name: r for r in CheckResult.objects.select_related("health_check")}
    assert results["queues"].status == CheckStatus.SUCCESS and "1 worker(s)" in results["queues"].message
    assert results["missing"].status == CheckStatus.FAILURE and "nowhere" in results["missing"].message

    # Grace after a worker starts: this worker is seconds old, so a missing queue is in grace...
    young = _celery_check(["nowhere"], grace=600)
    assert young.status == CheckStatus.FAILURE and young.in_grace and celery_worker in young.message
    # ...and without a grace period it simply fails.
    assert not _celery_check(["nowhere"]).in_grace


def test_celery_workers_check_fails_with_no_worker(transactional_db):
    outcome = _celery_check(["health"])
    assert outcome.status == CheckStatus.FAILURE and "0 worker(s)" in outcome.message


@pytest.mark.slow
def test_the_beat_task_runs_due_checks_on_a_worker(celery_worker):
    spec = HealthSpecFactory(checks=[check_doc("db"), check_doc("cache", "redis")])
    tasks.health_run_due.delay()
    wait_for(lambda: CheckResult.objects.filter(health_check__spec=spec).count() >= 2, "both results")
    assert set(CheckResult.objects.values_list("status", flat=True)) == {CheckStatus.SUCCESS}
    assert CheckResult.objects.count() == 2


@pytest.mark.django_db
def test_the_beat_schedule_exists_after_migrate():
    task = PeriodicTask.objects.get(task="apps.health.tasks.health_run_due")
    # Every second: a check runs on time within the tick, whatever its interval.
    assert task.enabled and task.interval.every == 1 and task.interval.period == "seconds"
    assert task.queue == "health"


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_no_orphaned_run(transactional_db, redis_client):
    with http_server() as (server, url):
        spec = HealthSpecFactory(checks=[
            check_doc("slow", "http", timeout=2, params={"url": f"{url}/sleep/4000"}),
            check_doc("db", timeout=1)])
        slow = spec.checks.get(name="slow")
        with start_worker(["health"]) as (proc, _):
            # `expires`: the unacked message of the killed task is never run by a later worker.
            tasks.health_spec_run.apply_async(args=[spec.id], expires=60)
            wait_for(lambda: server.arrivals, "the slow check to start")
            os.killpg(proc.pid, signal.SIGKILL)  # the whole worker dies, mid-run
            proc.wait(10)
        assert not CheckResult.objects.exists()  # nothing half-written
        # Its lease outlives it by at most the run's longest timeout plus a margin, never for good.
        assert 0 < leases.client().pttl(leases.key(slow.id)) <= 2000 + 5000

        with start_worker(["health"]):
            def every_check_has_a_result():
                tasks.health_run_due.delay()  # what beat does every few seconds (a tick per poll)
                return CheckResult.objects.values("health_check").distinct().count() == 2

            wait_for(every_check_has_a_result, "the new worker to run both checks", timeout=60, interval=0.5)
            wait_for(lambda: not leases.client().keys(leases.key("*")), "every lease to be released")
        statuses = dict(CheckResult.objects.values_list("health_check__name", "status"))
        assert statuses == {"slow": CheckStatus.TIMEOUT, "db": CheckStatus.SUCCESS}
        assert CheckResult.objects.count() == 2  # each check ran once more, never twice at a time
        assert server.arrivals == ["/sleep/4000", "/sleep/4000"]  # the killed run's, then the new one
