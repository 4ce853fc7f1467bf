"""CaseEvent rows can never be updated (append-only audit trail), and the beat schedule of the
case-metrics feed consumer exists on a fresh machine."""

from django.db import migrations

APPEND_ONLY_SQL = """
CREATE FUNCTION cases_caseevent_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'cases_caseevent is append-only (event %)', OLD.id;
END;
$$;
CREATE TRIGGER cases_caseevent_no_update BEFORE UPDATE ON cases_caseevent
    FOR EACH ROW EXECUTE FUNCTION cases_caseevent_append_only();
"""
DROP_SQL = """
DROP TRIGGER IF EXISTS cases_caseevent_no_update ON cases_caseevent;
DROP FUNCTION IF EXISTS cases_caseevent_append_only();
"""

TASK_NAME = "cases: case metrics rollup (change feed)"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=10, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=TASK_NAME,
        defaults={"task": "apps.cases.tasks.case_metrics_rollup", "interval": every, "enabled": True,
                  "description": "Reads new CaseEvents and updates per-case stats (handle time, FCR)."},
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("cases", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunSQL(APPEND_ONLY_SQL, DROP_SQL),
        migrations.RunPython(create_schedule, delete_schedule),
    ]
