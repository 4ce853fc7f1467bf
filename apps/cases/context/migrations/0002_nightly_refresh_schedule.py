"""The nightly bulk refresh of agent details, scheduled on a fresh machine with no manual setup
(editable in the admin's periodic tasks)."""

from django.db import migrations

NAME = "context: nightly refresh of agent details"
TASK = "apps.cases.context.tasks.context_refresh_agents"


def create(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    nightly, _ = CrontabSchedule.objects.get_or_create(
        minute="30", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC")
    PeriodicTask.objects.update_or_create(name=NAME, defaults={"task": TASK, "crontab": nightly,
                                                               "interval": None, "enabled": True})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("context", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
