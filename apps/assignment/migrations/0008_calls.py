"""Softphone calls: one row per call id (the idempotency of the calls webhook)."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('assignment', '0007_offer_expiry_schedule'),
        ('cases', '0008_hub_and_wait_indexes'),
    ]

    operations = [
        migrations.CreateModel(
            name='Call',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('call_id', models.CharField(max_length=128, unique=True)),
                ('caller', models.CharField(blank=True, max_length=16)),
                ('created_case', models.BooleanField(default=False)),
                ('answered_at', models.DateTimeField()),
                ('ended_at', models.DateTimeField(blank=True, null=True)),
                ('duration_seconds', models.PositiveIntegerField(blank=True, null=True)),
                ('agent', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='calls', to='assignment.agent')),
                ('case', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='calls', to='cases.case')),
            ],
            options={
                'ordering': ['-answered_at'],
                'constraints': [models.CheckConstraint(condition=models.Q(('ended_at__isnull', False), ('duration_seconds__isnull', True), _connector='OR'), name='call_duration_only_when_ended')],
            },
        ),
    ]
