"""With a live Celery worker: the celery_workers check, and the beat task running due checks."""

from __future__ import annotations

import time

import pytest
from django_celery_beat.models import PeriodicTask

from apps.health import tasks
from apps.health.checks import REGISTRY
from apps.health.checks.base import CheckContext
from apps.health.models import CheckResult, CheckStatus
from apps.health.services import health_spec_run
from tests.factories.health import HealthSpecFactory, check_doc


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
    deadline = time.monotonic() + 30
    while CheckResult.objects.filter(health_check__spec=spec).count() < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert set(CheckResult.objects.values_list("status", flat=True)) == {CheckStatus.SUCCESS}
    assert CheckResult.objects.count() == 2


@pytest.mark.django_db
def test_the_beat_schedule_exists_after_migrate():
    task = PeriodicTask.objects.get(task="apps.health.tasks.health_run_due")
    assert task.enabled and task.interval.every == 5 and task.interval.period == "seconds"
    assert task.queue == "health"
