"""Presence: agents set it, their client's heartbeats keep it fresh, and a beat job turns an
available agent whose heartbeats stopped into offline. Every change is also kept as history
(AgentPresenceChange, written by a trigger on the agent row) for the routing what-if."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection, transaction
from django.utils import timezone

from apps.assignment.models import Agent, AgentPresenceChange, Presence
from apps.assignment.realtime import agent_state_publish_on_commit
from apps.assignment.selectors import heartbeat_ttl
from apps.core.errors import ApplicationError

# One statement that also says whom it flipped, so their open tabs learn it.
_EXPIRE_SQL = """
UPDATE assignment_agent SET presence = %(offline)s, presence_changed_at = %(now)s
WHERE presence = %(available)s AND (heartbeat_at IS NULL OR heartbeat_at < %(fresh_since)s)
RETURNING id
"""
# What-if replays look back hours, never a month.
PRESENCE_HISTORY_DAYS = 30


def agent_heartbeat(*, agent: Agent) -> None:
    """The agent's client is alive: one UPDATE, no read."""
    Agent.objects.filter(pk=agent.pk).update(heartbeat_at=timezone.now())


@transaction.atomic
def agent_presence_set(*, agent: Agent, presence: str) -> Agent:
    if presence not in Presence.values:
        raise ApplicationError("Unknown presence.",
                               errors={"presence": [f"One of {', '.join(Presence.values)}."]})
    now = timezone.now()
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    if agent.presence != presence:
        agent.presence, agent.presence_changed_at = presence, now
    # Choosing a presence is itself a sign of life.
    agent.heartbeat_at = now
    agent.save(update_fields=["presence", "presence_changed_at", "heartbeat_at"])
    agent_state_publish_on_commit({agent.pk})
    return agent


def agents_presence_expire() -> int:
    """Available agents without a heartbeat within the TTL go offline; returns how many."""
    now = timezone.now()
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_EXPIRE_SQL, {"now": now, "available": Presence.AVAILABLE,
                                         "offline": Presence.OFFLINE, "fresh_since": now - heartbeat_ttl()})
            expired = [row[0] for row in cursor.fetchall()]
        agent_state_publish_on_commit(expired)
    return len(expired)


def agent_presence_changes_purge(*, now=None, days: int = PRESENCE_HISTORY_DAYS) -> int:
    """Presence history older than `days` goes, in one statement (the changed_at index serves
    it); returns how many rows."""
    cutoff = (now or timezone.now()) - timedelta(days=days)
    deleted, _ = AgentPresenceChange.objects.filter(changed_at__lt=cutoff).delete()
    return deleted
