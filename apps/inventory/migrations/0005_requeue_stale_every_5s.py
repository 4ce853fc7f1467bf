"""The stale-run check runs every 5 s (it was every minute): with runs orphaned after ~15 s of
silent heartbeat (conf.stale_after_s), a killed worker's run resumes within 30 s."""

from django.db import migrations
from django.utils import timezone

TASK = "apps.inventory.tasks.ingestion_runs_requeue_stale"
EVERY_S, BEFORE_S = 5, 60


def _every(apps, seconds: int) -> None:
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period="seconds")
    PeriodicTask.objects.filter(task=TASK).update(interval=interval)
    # A running beat reloads its schedule when this changes (what PeriodicTask.save() does).
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def forwards(apps, schema_editor):
    _every(apps, EVERY_S)


def backwards(apps, schema_editor):
    _every(apps, BEFORE_S)


class Migration(migrations.Migration):
    dependencies = [
        ("inventory", "0004_unfinished_runs_by_store"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
