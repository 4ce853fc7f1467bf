"""Beat schedules of the inventory app, so a fresh machine runs them with no manual setup."""

from django.db import migrations

SCHEDULES = (
    # name, task, every (seconds)
    ("inventory: re-queue stale ingestion runs", "apps.inventory.tasks.ingestion_runs_requeue_stale", 60),
    ("inventory: purge expired payloads and history", "apps.inventory.tasks.inventory_purge_expired", 3600),
    ("inventory: train out-of-stock model", "apps.inventory.tasks.oos_model_train", 86400),
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
        ("inventory", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
