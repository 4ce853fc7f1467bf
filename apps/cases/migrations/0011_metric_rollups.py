"""Support metrics: per-case metric facts, rollups per (day, queue) and (day, queue, agent), and
the beat schedule of their change-feed consumer (every 10 s)."""

import apps.cases.metric_models
import django.contrib.postgres.fields
import django.db.models.deletion
from django.db import migrations, models

TASK_NAME = "cases: metric rollups (change feed)"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=10, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=TASK_NAME,
        defaults={"task": "apps.cases.tasks.metric_rollups_consume", "interval": every, "enabled": True,
                  "description": "Reads new CaseEvents into the support metrics rollups (AHT, MTR, DWR, "
                                 "FCR per day, queue and agent) and settles cases whose reopen window passed."},
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('assignment', '0001_initial'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
        ('cases', '0010_config_drafts'),
    ]

    operations = [
        migrations.CreateModel(
            name='CaseMetricFacts',
            fields=[
                ('case', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='+', serialize=False, to='cases.case')),
                ('customer_ref', models.CharField(blank=True, max_length=64)),
                ('delivery_ref', models.CharField(blank=True, max_length=64)),
                ('created_at', models.DateTimeField()),
                ('first_offer_at', models.DateTimeField(blank=True, null=True)),
                ('accepted_at', models.DateTimeField(blank=True, null=True)),
                ('first_response_at', models.DateTimeField(blank=True, null=True)),
                ('first_resolved_at', models.DateTimeField(blank=True, null=True)),
                ('reopened_at', models.DateTimeField(blank=True, null=True)),
                ('followup_at', models.DateTimeField(blank=True, null=True)),
                ('handle_seconds', models.FloatField(blank=True, null=True)),
                ('agent_contacts', models.PositiveIntegerField(default=0)),
                ('manual_actions', models.PositiveIntegerField(default=0)),
                ('offers_expired', models.PositiveIntegerField(default=0)),
                ('first_response_target', models.PositiveIntegerField(blank=True, null=True)),
                ('resolution_target', models.PositiveIntegerField(blank=True, null=True)),
                ('dwr', models.BooleanField(null=True)),
                ('fcr', models.BooleanField(null=True)),
                ('settles_at', models.DateTimeField(blank=True, null=True)),
                ('contribution', models.JSONField(default=list)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('agent', models.ForeignKey(blank=True, db_constraint=False, null=True, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='assignment.agent')),
                ('queue', models.ForeignKey(db_constraint=False, on_delete=django.db.models.deletion.DO_NOTHING, related_name='+', to='cases.queue')),
            ],
            options={
                'verbose_name_plural': 'case metric facts',
                'indexes': [models.Index(condition=models.Q(('settles_at__isnull', False), models.Q(('dwr__isnull', True), ('fcr__isnull', True), _connector='OR')), fields=['settles_at'], name='metricfacts_unsettled_idx')],
            },
        ),
        migrations.CreateModel(
            name='MetricRollupAgentDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('created', models.IntegerField(default=0)),
                ('first_offer_n', models.IntegerField(default=0)),
                ('first_offer_seconds', models.FloatField(default=0.0)),
                ('first_response_n', models.IntegerField(default=0)),
                ('first_response_seconds', models.FloatField(default=0.0)),
                ('first_response_breached', models.IntegerField(default=0)),
                ('offers_expired', models.IntegerField(default=0)),
                ('offer_wait_buckets', django.contrib.postgres.fields.ArrayField(base_field=models.IntegerField(), default=apps.cases.metric_models._no_offer_waits, size=None)),
                ('resolved', models.IntegerField(default=0)),
                ('resolve_seconds', models.FloatField(default=0.0)),
                ('handled', models.IntegerField(default=0)),
                ('handle_seconds', models.FloatField(default=0.0)),
                ('manual_actions', models.IntegerField(default=0)),
                ('dwr_ok', models.IntegerField(default=0)),
                ('dwr_reopened', models.IntegerField(default=0)),
                ('fcr_ok', models.IntegerField(default=0)),
                ('fcr_failed', models.IntegerField(default=0)),
                ('resolution_breached', models.IntegerField(default=0)),
                ('agent', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='assignment.agent')),
                ('queue', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='cases.queue')),
            ],
            options={
                'ordering': ['day', 'queue', 'agent'],
                'indexes': [models.Index(fields=['agent', 'day'], name='metricrollup_agent_idx')],
                'constraints': [models.UniqueConstraint(fields=('day', 'queue', 'agent'), name='metricrollup_agent_day_unique')],
            },
        ),
        migrations.CreateModel(
            name='MetricRollupQueueDay',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField()),
                ('created', models.IntegerField(default=0)),
                ('first_offer_n', models.IntegerField(default=0)),
                ('first_offer_seconds', models.FloatField(default=0.0)),
                ('first_response_n', models.IntegerField(default=0)),
                ('first_response_seconds', models.FloatField(default=0.0)),
                ('first_response_breached', models.IntegerField(default=0)),
                ('offers_expired', models.IntegerField(default=0)),
                ('offer_wait_buckets', django.contrib.postgres.fields.ArrayField(base_field=models.IntegerField(), default=apps.cases.metric_models._no_offer_waits, size=None)),
                ('resolved', models.IntegerField(default=0)),
                ('resolve_seconds', models.FloatField(default=0.0)),
                ('handled', models.IntegerField(default=0)),
                ('handle_seconds', models.FloatField(default=0.0)),
                ('manual_actions', models.IntegerField(default=0)),
                ('dwr_ok', models.IntegerField(default=0)),
                ('dwr_reopened', models.IntegerField(default=0)),
                ('fcr_ok', models.IntegerField(default=0)),
                ('fcr_failed', models.IntegerField(default=0)),
                ('resolution_breached', models.IntegerField(default=0)),
                ('queue', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='cases.queue')),
            ],
            options={
                'ordering': ['day', 'queue'],
                'constraints': [models.UniqueConstraint(fields=('day', 'queue'), name='metricrollup_queue_day_unique')],
            },
        ),
        migrations.RunPython(create_schedule, delete_schedule),
    ]
