"""The daily purge of presence history (kept for the routing what-if), switched on by default."""

from django.db import migrations

NAME = "assignment: purge presence history (daily)"
TASK = "apps.assignment.tasks.agent_presence_changes_purge"


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="days")
    PeriodicTask.objects.get_or_create(name=NAME, defaults={
        "task": TASK, "interval": interval, "enabled": True,
        "description": "Deletes agents' presence changes older than 30 days (the routing what-if "
                       "replays at most that far back).",
    })


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("assignment", "0010_schedule_descriptions"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
