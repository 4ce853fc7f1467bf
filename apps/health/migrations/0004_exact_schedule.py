"""Claims and host pinning of health checks, and a beat tick of one second (a check runs on time
within the tick, so the tick bounds how late it may be)."""

from django.conf import settings
from django.db import migrations, models

TASK_NAME = "health: run due checks"
# Check types that read the runner's own files (their class says `host_local = True`). A
# migration cannot import the registry: this list is the one at the time of writing.
HOST_LOCAL_TYPES = ["log_grep"]


def pin_local_checks(apps, schema_editor):
    # Declared before checks had a host: pinned to the host that migrates, the best guess of
    # where they were declared (apply the spec with `host:` to move them). Their state (a log
    # offset) becomes that host's.
    HealthCheck = apps.get_model("health", "HealthCheck")
    host = settings.CASEHUB_HOST_NAME
    for check in HealthCheck.objects.filter(type__in=HOST_LOCAL_TYPES, host=""):
        check.host = host
        if check.state and "hosts" not in check.state:
            check.state = {"hosts": {host: check.state}}
        check.save(update_fields=["host", "state"])


def set_tick(every: int):
    def forward(apps, schema_editor):
        IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
        PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
        interval, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        # A tick not started within a few periods is covered by the ones after it: no backlog.
        PeriodicTask.objects.filter(name=TASK_NAME).update(interval=interval, expire_seconds=max(every, 3))
    return forward


class Migration(migrations.Migration):
    dependencies = [
        ("health", "0003_spec_name_plain"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AddField(
            model_name="healthcheck",
            name="claim",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="healthcheck",
            name="host",
            field=models.CharField(blank=True, default="", max_length=255),
        ),
        migrations.RunPython(pin_local_checks, migrations.RunPython.noop),
        migrations.RunPython(set_tick(1), set_tick(5)),
    ]
