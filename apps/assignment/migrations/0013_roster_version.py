"""The roster version (RosterVersion): one row, given a new random value by every statement that
changes what the engine keeps of agents between batches (see apps.assignment.roster)."""

from django.db import migrations, models

# Statement-level: a bulk import of 500 agents changes the version once. `UPDATE OF` fires when a
# statement sets those columns (changed or not); presence and heartbeat updates set others only.
ROSTER_SQL = """
INSERT INTO assignment_rosterversion (id, version) VALUES (1, gen_random_uuid());

CREATE FUNCTION assignment_roster_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- An upsert: a TRUNCATE of every table (a test's flush) takes the row too.
    INSERT INTO assignment_rosterversion (id, version) VALUES (1, gen_random_uuid())
    ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version;
    RETURN NULL;
END;
$$;

CREATE TRIGGER assignment_agent_roster_rows AFTER INSERT OR DELETE OR TRUNCATE ON assignment_agent
    FOR EACH STATEMENT EXECUTE FUNCTION assignment_roster_changed();
CREATE TRIGGER assignment_agent_roster_columns AFTER UPDATE OF skills, capacity, channel_weights
    ON assignment_agent FOR EACH STATEMENT EXECUTE FUNCTION assignment_roster_changed();
CREATE TRIGGER assignment_agent_queues_roster AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON assignment_agent_queues FOR EACH STATEMENT EXECUTE FUNCTION assignment_roster_changed();
"""
ROSTER_DROP_SQL = """
DROP TRIGGER IF EXISTS assignment_agent_roster_rows ON assignment_agent;
DROP TRIGGER IF EXISTS assignment_agent_roster_columns ON assignment_agent;
DROP TRIGGER IF EXISTS assignment_agent_queues_roster ON assignment_agent_queues;
DROP FUNCTION IF EXISTS assignment_roster_changed();
"""


class Migration(migrations.Migration):

    dependencies = [
        ('assignment', '0012_agent_channel_weights'),
    ]

    operations = [
        migrations.CreateModel(
            name='RosterVersion',
            fields=[
                ('id', models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ('version', models.UUIDField()),
            ],
            options={
                'constraints': [models.CheckConstraint(condition=models.Q(('id', 1)), name='rosterversion_one_row')],
            },
        ),
        migrations.RunSQL(ROSTER_SQL, ROSTER_DROP_SQL),
    ]
