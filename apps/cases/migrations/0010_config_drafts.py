"""Queue config drafts: state, comment, based_on, published_at/by, the publish permission; and
the config version each case was last validated against. Existing versions become published."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('cases', '0009_customer_index'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='queueconfig',
            options={'ordering': ['queue', '-version'], 'permissions': [('publish_queueconfig', 'Can publish queue config versions')]},
        ),
        migrations.AddField(
            model_name='case',
            name='config_version',
            field=models.PositiveIntegerField(blank=True, editable=False, null=True),
        ),
        migrations.AddField(
            model_name='queueconfig',
            name='based_on',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='cases.queueconfig'),
        ),
        migrations.AddField(
            model_name='queueconfig',
            name='comment',
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name='queueconfig',
            name='published_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
        migrations.AddField(
            model_name='queueconfig',
            name='published_by',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL),
        ),
        migrations.AddField(
            model_name='queueconfig',
            name='state',
            field=models.CharField(choices=[('draft', 'Draft'), ('published', 'Published')], default='published', max_length=16),
        ),
        # Every version so far was published when it was created, by whoever created it.
        migrations.RunSQL(
            "UPDATE cases_queueconfig SET published_at = created_at, published_by_id = created_by_id",
            migrations.RunSQL.noop,
        ),
        migrations.AddConstraint(
            model_name='queueconfig',
            constraint=models.CheckConstraint(condition=models.Q(('is_active', False), ('state', 'published'), _connector='OR'), name='queueconfig_active_is_published'),
        ),
        migrations.AddConstraint(
            model_name='queueconfig',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('published_at__isnull', True), ('state', 'draft')), models.Q(('published_at__isnull', False), ('state', 'published')), _connector='OR'), name='queueconfig_published_has_time'),
        ),
    ]
