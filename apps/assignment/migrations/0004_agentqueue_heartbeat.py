"""The agent-queue many-to-many becomes AgentQueue (same table, rows kept) with a per-queue
priority; agents get a heartbeat time."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("assignment", "0003_agent_change_own_presence"),
        ("cases", "0003_casestats_last_event_id"),
    ]

    operations = [
        migrations.AddField(
            model_name="agent",
            name="heartbeat_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
        # The auto-created table already has these columns and the (agent, queue) unique index:
        # only Django's state learns about the model.
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="AgentQueue",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                                   verbose_name="ID")),
                        ("agent", models.ForeignKey(on_delete=models.deletion.CASCADE,
                                                    related_name="queue_links", to="assignment.agent")),
                        ("queue", models.ForeignKey(on_delete=models.deletion.CASCADE,
                                                    related_name="agent_links", to="cases.queue")),
                    ],
                    options={"db_table": "assignment_agent_queues", "unique_together": {("agent", "queue")}},
                ),
                migrations.AlterField(
                    model_name="agent",
                    name="queues",
                    field=models.ManyToManyField(blank=True, related_name="agents",
                                                 through="assignment.AgentQueue", to="cases.queue"),
                ),
            ],
        ),
        migrations.AddField(
            model_name="agentqueue",
            name="priority",
            field=models.PositiveSmallIntegerField(default=1),
        ),
        migrations.AddConstraint(
            model_name="agentqueue",
            constraint=models.CheckConstraint(condition=models.Q(("priority__gte", 1), ("priority__lte", 9)),
                                              name="agentqueue_priority_range"),
        ),
    ]
