"""Every periodic job has a schedule after migrate, the admin lists what each does, and a real
celery beat follows an interval changed or a job switched off in the admin, without a restart."""

from __future__ import annotations

import inspect
import uuid

import pytest
import redis
from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.celery import app
from tests.factories.accounts import UserFactory
from tests.utils.processes import celery_beat
from tests.utils.waiting import wait_for

# Any task does: beat only sends it, to a queue of the test's own that no worker reads.
TASK = "apps.core.tasks.idempotency_keys_purge_expired"


def periodic_tasks_in_code() -> set[str]:
    """The tasks of our apps' tasks modules that take no arguments: nothing but a schedule (or a
    person) starts them, while the tasks services enqueue carry the id of what they work on.
    (The demo agents' heartbeat lives in apps.assignment.demo: the demo seeder schedules it, in
    the embedded demo only.)"""
    app.loader.import_default_modules()
    found = set()
    for name, task in app.tasks.items():
        if not (name.startswith("apps.") and task.__module__.endswith(".tasks")):
            continue
        required = [p for p in inspect.signature(task.run).parameters.values()
                    if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if not required:
            found.add(name)
    return found


@pytest.mark.django_db
def test_every_periodic_task_has_a_schedule_after_migrate():
    periodic = periodic_tasks_in_code()
    # The derivation finds the jobs at all, and leaves out the tasks services enqueue.
    assert {"apps.assignment.tasks.assignment_batch_run", "apps.health.tasks.health_run_due"} <= periodic
    assert "apps.cases.tasks.message_deliver" not in periodic
    assert "apps.cases.context.tasks.context_refresh_agents" in periodic  # nightly, by crontab

    scheduled = set(PeriodicTask.objects.values_list("task", flat=True))
    assert periodic - scheduled == set()


@pytest.mark.django_db
def test_the_schedules_list_says_what_each_job_does_escaped(client):
    PeriodicTask.objects.filter(task=TASK).update(description="<img src=x onerror=alert(1)> keys")
    PeriodicTask.objects.filter(task="apps.inventory.tasks.inventory_purge_expired").update(description="")
    client.force_login(UserFactory(username="ops-schedules", roles=["ops"]))

    page = client.get("/admin/django_celery_beat/periodictask/").content.decode()

    assert "&lt;img src=x onerror=alert(1)&gt; keys" in page and "<img src=x" not in page
    assert "Assigns (or offers) waiting cases to available agents" in page  # from its migration
    # No description: the task's own docstring says it.
    assert "Beat (hourly): delete raw payloads and history rows past their TTL" in page


def _sends(broker: redis.Redis, queue: str) -> int:
    return broker.llen(queue)


def _admin_change(client, task: PeriodicTask, **changes) -> None:
    """Save the task through the admin change form, as ops would: its own values, some changed."""
    url = f"/admin/django_celery_beat/periodictask/{task.pk}/change/"
    form = client.get(url).context["adminform"].form
    data = {}
    for name in form.fields:
        value = changes.get(name, form[name].value())
        if value is None or value is False:
            continue
        data[name] = "on" if value is True else value
    response = client.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_beat_follows_an_interval_changed_and_a_job_switched_off_without_restart(admin_client):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    job_queue, probe_queue, probe_queue_2 = (f"test-beat-{uuid.uuid4().hex[:8]}" for _ in range(3))
    PeriodicTask.objects.update(enabled=False)  # only this test's schedules run
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.HOURS)
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    job = PeriodicTask.objects.create(name="test: job", task=TASK, interval=hourly, queue=job_queue)
    # The probe sends every second: each of its sends shows beat ticked with the schedule it had.
    probe = PeriodicTask.objects.create(name="test: probe", task=TASK, interval=every_second,
                                        queue=probe_queue)
    try:
        with celery_beat():
            wait_for(lambda: _sends(broker, probe_queue) >= 2, "beat to send the probe twice", timeout=60)
            assert _sends(broker, job_queue) == 0  # hourly: not yet due

            _admin_change(admin_client, job, interval=every_second.pk)
            wait_for(lambda: _sends(broker, job_queue) >= 2, "beat to send the job every second", timeout=60)

            job.refresh_from_db()
            job.enabled = False
            job.save()
            # Saved after the job: once beat sends the probe to its new queue, it has the job off too.
            probe.queue = probe_queue_2
            probe.save()
            wait_for(lambda: _sends(broker, probe_queue_2) >= 1, "beat to reload its schedule", timeout=60)
            broker.delete(job_queue)
            wait_for(lambda: _sends(broker, probe_queue_2) >= 3, "two more probe sends", timeout=60)
            assert _sends(broker, job_queue) == 0
    finally:
        broker.delete(job_queue, probe_queue, probe_queue_2)
        broker.close()
