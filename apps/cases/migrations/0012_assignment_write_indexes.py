"""Fewer indexes for the assignment engine's writes. On cases_case: the single-column queue and
agent indexes (the (queue, status) and (agent, status) ones serve the same lookups), and the
LIKE-prefix index unique=True gave legacy_id; on cases_caseevent: the case index ((case, id)
serves it). Legacy ids stay unique: the field's constraint is renamed to a model constraint, so
no index is rebuilt."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('assignment', '0012_agent_channel_weights'),
        ('cases', '0011_metric_rollups'),
    ]

    operations = [
        migrations.AlterField(
            model_name='case',
            name='assigned_agent',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='cases', to='assignment.agent'),
        ),
        migrations.AlterField(
            model_name='case',
            name='queue',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='cases', to='cases.queue'),
        ),
        migrations.AlterField(
            model_name='caseevent',
            name='case',
            field=models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='cases.case'),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name='case',
                    name='legacy_id',
                    field=models.CharField(blank=True, max_length=100, null=True),
                ),
                migrations.AddConstraint(
                    model_name='case',
                    constraint=models.UniqueConstraint(fields=('legacy_id',), name='case_legacy_id_unique'),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    sql=[
                        "DROP INDEX cases_case_legacy_id_315754f2_like",
                        "ALTER TABLE cases_case RENAME CONSTRAINT cases_case_legacy_id_key TO case_legacy_id_unique",
                    ],
                    reverse_sql=[
                        "ALTER TABLE cases_case RENAME CONSTRAINT case_legacy_id_unique TO cases_case_legacy_id_key",
                        "CREATE INDEX cases_case_legacy_id_315754f2_like ON cases_case (legacy_id varchar_pattern_ops)",
                    ],
                ),
            ],
        ),
    ]
