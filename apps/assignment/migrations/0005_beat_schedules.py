"""Beat schedules of assignment, so a fresh machine runs them with no manual setup (editable in
the admin's periodic tasks)."""

from django.db import migrations

SCHEDULES = (
    # name, task, every (seconds)
    ("assignment: micro-batch", "apps.assignment.tasks.assignment_batch_run", 2),
    ("assignment: expire stale presence", "apps.assignment.tasks.agents_presence_expire", 15),
    ("assignment: reconcile load counters", "apps.assignment.tasks.counters_reconcile", 60),
    ("assignment: load counters (change feed)", "apps.assignment.tasks.counters_feed_consume", 2),
)


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every in SCHEDULES:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "interval": interval,
                                                                   "enabled": True})


def remove(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _, _ in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("assignment", "0004_agentqueue_heartbeat"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
