"""Descriptions of assignment's default schedules, shown in the admin's periodic tasks so ops know
what they change or switch off. (The demo agents' heartbeat is scheduled by the demo seeder, in
the embedded demo only.)"""

from django.db import migrations

DESCRIPTIONS = {
    "apps.assignment.tasks.assignment_batch_run":
        "Assigns (or offers) waiting cases to available agents, one micro-batch per run.",
    "apps.assignment.tasks.agents_presence_expire":
        "Sets available agents whose client stopped sending heartbeats to offline.",
    "apps.assignment.tasks.counters_reconcile":
        "Rebuilds every agent's load counter from the database (heals drift).",
    "apps.assignment.tasks.counters_feed_consume":
        "Updates the load counters of the agents that new case events touched.",
    "apps.assignment.tasks.offers_expire":
        "Expires offers not answered in time; their cases wait again.",
}


def describe(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for task, description in DESCRIPTIONS.items():
        # Only where none was written: a description ops typed in the admin stays.
        PeriodicTask.objects.filter(task=task, description="").update(description=description)


class Migration(migrations.Migration):
    dependencies = [
        ("assignment", "0009_presence_history"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(describe, migrations.RunPython.noop)]
