"""The beat schedule that runs due health checks exists on a fresh machine."""

from django.db import migrations

TASK_NAME = "health: run due checks"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=5, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=TASK_NAME,
        defaults={
            "task": "apps.health.tasks.health_run_due", "interval": every, "enabled": True,
            "queue": "health",
            # A tick nobody picked up within its own period is useless: the next one covers it.
            "expire_seconds": 5,
            "description": "Runs the checks of enabled health specs whose interval has elapsed.",
        },
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("health", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, delete_schedule)]
