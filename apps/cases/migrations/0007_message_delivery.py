"""Delivery state of outbound mail and the attachments a message dropped; the beat job that sends
mail whose send never reached a worker (the broker was down when it was queued)."""

from django.conf import settings
from django.db import migrations, models

TASK_NAME = "cases: send outbound mail left pending"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=TASK_NAME,
        defaults={"task": "apps.cases.tasks.messages_deliver_pending", "interval": every, "enabled": True,
                  "description": "Queues the send of agent replies still pending after a while."},
    )


def delete_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('cases', '0006_messages'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.AddField(
            model_name='message',
            name='delivered_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='message',
            name='delivery_attempts',
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name='message',
            name='delivery_due_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='message',
            name='delivery_error',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='message',
            name='delivery_status',
            field=models.CharField(blank=True, choices=[('', 'Not emailed'), ('pending', 'Pending'), ('sent', 'Sent'), ('failed', 'Failed')], default='', max_length=16),
        ),
        migrations.AddField(
            model_name='message',
            name='dropped_attachments',
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddIndex(
            model_name='message',
            index=models.Index(condition=models.Q(('delivery_status', 'pending')), fields=['id'], name='message_delivery_pending_idx'),
        ),
        migrations.AddConstraint(
            model_name='message',
            constraint=models.CheckConstraint(condition=models.Q(('delivery_status__in', ['', 'pending', 'sent', 'failed'])), name='message_delivery_status_known'),
        ),
        migrations.AddConstraint(
            model_name='message',
            constraint=models.CheckConstraint(condition=models.Q(('delivery_status', ''), ('direction', 'outbound'), _connector='OR'), name='message_delivery_outbound_only'),
        ),
        migrations.RunPython(create_schedule, delete_schedule),
    ]
