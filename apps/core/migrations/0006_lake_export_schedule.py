"""Beat schedule of the lake export: every stream is exported every minute."""

from django.db import migrations

NAME, TASK, EVERY_S = "core: export to the lake", "apps.core.tasks.lake_export_run", 60
DESCRIPTION = ("Writes new case events, case snapshots and inventory item outcomes to the Parquet lake, "
               "exactly once (watermark per stream).")


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    interval, _ = IntervalSchedule.objects.get_or_create(every=EVERY_S, period="seconds")
    PeriodicTask.objects.update_or_create(name=NAME, defaults={"task": TASK, "interval": interval,
                                                               "enabled": True, "description": DESCRIPTION})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0005_lakewatermark"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create, remove)]
