"""The case side of offers: an accepted offer moves the case on (to 'assigned' where the queue
allows it); declined and expired offers give their cases back to the waiting pool, many at once
in one statement. The offers themselves are apps.assignment's."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from django.db import connection
from django.utils import timezone

from apps.cases.models import Case, CaseEvent, EventKind, Status
from apps.cases.services._events import _case_lock, _event, _events_write
from apps.cases.services.cases import _moves_to_assigned, _transition
from apps.cases.services.queue_configs import _active_config
from apps.core.errors import Conflict
from apps.core.feed import feed_lock_key, feed_writer_enter


def case_offer_accept(*, case: Case | Any, agent, actor=None) -> Case:
    """The agent takes the case offered to them. Runs in the caller's transaction (which holds
    the offer); the case must still be held by that agent."""
    case = _case_lock(case)
    if case.assigned_agent_id != agent.pk:
        raise Conflict("This case is no longer offered to you.", code="offer_withdrawn")
    config = _active_config(case.queue_id)
    events = [_event(case, EventKind.OFFER_ACCEPTED, actor, agent=agent.pk, name=str(agent))]
    if _moves_to_assigned(case.status, config):
        events += _transition(case, Status.ASSIGNED, actor, config)
    case.save()
    _events_write(events)
    return case


# Row v: [case id, agent id, event kind]. Only a case still held by that agent is released (the
# agent may have lost it another way meanwhile); the event names the agent as `from`, so a replay
# of the timeline and the load-counter consumer read it as an unassignment.
_RELEASE_SQL = """
WITH fence AS MATERIALIZED (
    SELECT pg_advisory_xact_lock_shared(%(fence)s)
), v AS (
    SELECT (r->>0)::uuid AS id, (r->>1)::bigint AS agent_id, r->>2 AS kind, n
    FROM fence, jsonb_array_elements(%(rows)s::jsonb) WITH ORDINALITY AS t(r, n)
), released AS (
    UPDATE cases_case c SET assigned_agent_id = NULL, assigned_weight = 0, routing_retry_at = NULL,
                            updated_at = %(now)s
    FROM v
    WHERE c.id = v.id AND c.assigned_agent_id = v.agent_id
    RETURNING c.id, v.agent_id, v.kind, v.n
)
INSERT INTO cases_caseevent (case_id, kind, actor_id, data, created_at)
SELECT r.id, r.kind, %(actor)s::bigint,
       jsonb_build_object('from', r.agent_id, 'to', NULL, 'agent', ag.display_name), %(now)s
FROM released r JOIN assignment_agent ag ON ag.id = r.agent_id
ORDER BY r.n
RETURNING case_id
"""
RELEASE_KINDS = (EventKind.OFFER_DECLINED, EventKind.OFFER_EXPIRED)


def cases_offers_release(*, releases: Iterable[tuple[Any, int, str]], actor=None) -> list[Any]:
    """Give offered cases back to the waiting pool: (case id, agent id, OFFER_DECLINED or
    OFFER_EXPIRED) each. The cases keep their status (an offer never moved it), so the engine
    claims them again at once. Returns the ids released."""
    rows = []
    for case_id, agent_id, kind in releases:
        if kind not in RELEASE_KINDS:
            raise ValueError(f"not a release: {kind}")
        rows.append([str(case_id), agent_id, str(kind)])
    if not rows:
        return []
    feed_writer_enter(CaseEvent)
    with connection.cursor() as cursor:
        cursor.execute(_RELEASE_SQL, {"rows": json.dumps(rows), "now": timezone.now(),
                                      "fence": feed_lock_key(CaseEvent),
                                      "actor": actor.pk if getattr(actor, "pk", None) else None})
        return [row[0] for row in cursor.fetchall()]
