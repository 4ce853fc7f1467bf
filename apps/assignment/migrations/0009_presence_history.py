"""Presence history of agents (AgentPresenceChange), replayed by the routing what-if, written by a
trigger: every way presence changes (services, the admin, the demo, bulk updates) is recorded."""

import django.db.models.deletion
from django.db import migrations, models

# The change's time is the row's presence_changed_at when the writer set it, else the statement's.
HISTORY_SQL = """
CREATE FUNCTION assignment_agent_presence_history() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO assignment_agentpresencechange (agent_id, presence, changed_at)
    VALUES (NEW.id, NEW.presence,
            CASE WHEN NEW.presence_changed_at IS DISTINCT FROM OLD.presence_changed_at
                 THEN NEW.presence_changed_at ELSE statement_timestamp() END);
    RETURN NULL;
END $$;
CREATE TRIGGER agent_presence_history AFTER UPDATE OF presence ON assignment_agent
    FOR EACH ROW WHEN (OLD.presence IS DISTINCT FROM NEW.presence)
    EXECUTE FUNCTION assignment_agent_presence_history();
"""
HISTORY_DROP_SQL = """
DROP TRIGGER IF EXISTS agent_presence_history ON assignment_agent;
DROP FUNCTION IF EXISTS assignment_agent_presence_history();
"""


class Migration(migrations.Migration):

    dependencies = [
        ('assignment', '0008_calls'),
    ]

    operations = [
        migrations.CreateModel(
            name='AgentPresenceChange',
            fields=[
                ('id', models.BigAutoField(primary_key=True, serialize=False)),
                ('presence', models.CharField(choices=[('offline', 'Offline'), ('available', 'Available'),
                                                       ('away', 'Away'), ('busy', 'Busy')], max_length=16)),
                ('changed_at', models.DateTimeField()),
                ('agent', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE,
                                            related_name='presence_changes', to='assignment.agent')),
            ],
            options={
                'ordering': ['-changed_at', '-id'],
                'indexes': [models.Index(fields=['changed_at'], name='presencechange_changed_idx'),
                            models.Index(fields=['agent', 'changed_at'], name='presencechange_agent_idx')],
            },
        ),
        migrations.RunSQL(HISTORY_SQL, HISTORY_DROP_SQL),
    ]
