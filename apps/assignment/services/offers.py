"""Offers: the engine records them with the cases it holds for agents; the agent accepts or
declines; the expiry job takes back the silent ones. A released case waits again, and the
engine does not offer it to the same agent again (see `declined_agents` in the engine's claim).

Locks are taken case first, offer second, on every path that waits for a lock; the expiry job
skips locked rows instead of waiting, so the paths cannot deadlock one another.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import orjson
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from apps.assignment import counters
from apps.assignment.models import Agent, Offer, OfferState
from apps.assignment.realtime import agent_state_publish_on_commit
from apps.assignment.selectors import agent_loads
from apps.cases import services as case_services
from apps.cases.models import Case, CaseEvent, EventKind
from apps.core.errors import Conflict, NotFound
from apps.core.feed import feed_writer_enter
from apps.core.scheduling import task_send

BATCH_TASK = "apps.assignment.tasks.assignment_batch_run"
# Up while a requested batch has not started: cases arriving together (an import, a burst of
# mail) ask for one batch, not one each. Every batch takes it down as it starts, before it
# claims, so a request made after that start sends a new batch and no case misses one. The TTL
# only covers a request whose message was lost.
BATCH_REQUEST_KEY = "assign:batch-requested"
BATCH_REQUEST_TTL_MS = 10_000


def assignment_batch_request() -> bool:
    """Ask for a batch now (cases arrived or came back); False when one is already on its way.
    The beat schedule covers anything a lost request would miss."""
    if not settings.ASSIGNMENT_ON_DEMAND:
        return False
    if not counters.flag_set_once(BATCH_REQUEST_KEY, BATCH_REQUEST_TTL_MS):
        return False
    return task_send(BATCH_TASK)


def assignment_batch_started() -> None:
    counters.flag_clear(BATCH_REQUEST_KEY)


# The rows arrive as one JSON array, as the engine's other write does: no model instances and
# no per-value parameters for a batch of hundreds.
_RECORD_SQL = """
INSERT INTO assignment_offer (case_id, agent_id, weight, state, created_at, expires_at)
SELECT (r->>0)::uuid, (r->>1)::bigint, (r->>2)::int, 'pending', %(now)s, (r->>3)::timestamptz
FROM jsonb_array_elements(%(rows)s::jsonb) AS t(r)
"""


def offers_record(*, held: Iterable[tuple[Any, int, int, datetime]], now: datetime) -> None:
    """The offers of cases an engine batch just gave to agents: (case id, agent id, weight,
    expiry) each, in one statement inside the batch's transaction."""
    rows = [list(offer) for offer in held]  # orjson writes the UUIDs and datetimes itself
    if rows:
        with connection.cursor() as cursor:
            cursor.execute(_RECORD_SQL, {"rows": orjson.dumps(rows).decode(), "now": now})


def _loads_refresh(agent_ids: set[int]) -> None:
    """After commit: the absolute load of agents who gave a case back (never a decrement; the
    counters consumer would get there too, this is only sooner)."""
    if agent_ids:
        transaction.on_commit(lambda: counters.counters_set(agent_loads(agent_ids)))


def _offer_locked(offer_id: Any, user) -> Offer:
    """The pending-or-settled offer of the user's agent, its case locked first, then itself."""
    try:
        offer_id = int(offer_id)
    except (TypeError, ValueError):
        raise NotFound("Offer not found.") from None
    found = Offer.objects.filter(pk=offer_id, agent__user_id=getattr(user, "pk", None)) \
        .values_list("case_id", flat=True).first()
    if found is None:
        raise NotFound("Offer not found.")
    feed_writer_enter(CaseEvent)
    Case.objects.select_for_update(of=("self",)).filter(pk=found).values_list("pk").first()
    return Offer.objects.select_for_update(of=("self",)).select_related("agent").get(pk=offer_id)


def _require_pending(offer: Offer, now: datetime) -> None:
    if offer.state != OfferState.PENDING:
        raise Conflict(f"This offer was {offer.state} already.", code=f"offer_{offer.state}")
    if offer.expires_at <= now:
        # The expiry job gives the case back within seconds; accepting late would race it.
        raise Conflict("This offer has expired.", code="offer_expired")


@transaction.atomic
def offer_accept(*, offer_id: Any, user) -> Offer:
    """The agent takes the offered case: the offer is settled, the case moves on."""
    offer = _offer_locked(offer_id, user)
    now = timezone.now()
    _require_pending(offer, now)
    offer.state, offer.responded_at = OfferState.ACCEPTED, now
    offer.save(update_fields=["state", "responded_at"])
    case_services.case_offer_accept(case=offer.case_id, agent=offer.agent, actor=user)
    agent_state_publish_on_commit({offer.agent_id})
    return offer


@transaction.atomic
def offer_decline(*, offer_id: Any, user) -> Offer:
    """The agent passes: the case waits again and goes to someone else at once."""
    offer = _offer_locked(offer_id, user)
    now = timezone.now()
    _require_pending(offer, now)
    offer.state, offer.responded_at = OfferState.DECLINED, now
    offer.save(update_fields=["state", "responded_at"])
    case_services.cases_offers_release(releases=[(offer.case_id, offer.agent_id, EventKind.OFFER_DECLINED)],
                                       actor=user)
    _loads_refresh({offer.agent_id})
    agent_state_publish_on_commit({offer.agent_id})
    transaction.on_commit(assignment_batch_request)
    return offer


# Due offers and their cases, locked together; rows another transaction holds (an agent
# accepting right now) are left for the next run.
_DUE_SQL = """
SELECT o.id, o.case_id, o.agent_id
FROM assignment_offer o JOIN cases_case c ON c.id = o.case_id
WHERE o.state = 'pending' AND o.expires_at <= %(now)s
ORDER BY o.expires_at
LIMIT %(limit)s
FOR UPDATE OF o, c SKIP LOCKED
"""


def offers_expire(*, limit: int = 1000) -> int:
    """Beat-driven: offers not answered in time expire and their cases wait again (not for the
    same agent). Returns how many expired."""
    with transaction.atomic():
        feed_writer_enter(CaseEvent)
        now = timezone.now()
        with connection.cursor() as cursor:
            cursor.execute(_DUE_SQL, {"now": now, "limit": limit})
            due = cursor.fetchall()
        if not due:
            return 0
        Offer.objects.filter(pk__in=[row[0] for row in due]).update(state=OfferState.EXPIRED,
                                                                    responded_at=now)
        case_services.cases_offers_release(
            releases=[(case_id, agent_id, EventKind.OFFER_EXPIRED) for _, case_id, agent_id in due])
        _loads_refresh({agent_id for *_, agent_id in due})
        agent_state_publish_on_commit({agent_id for *_, agent_id in due})
        transaction.on_commit(assignment_batch_request)
    return len(due)


def agent_for_user(user) -> Agent:
    agent = Agent.objects.filter(user_id=getattr(user, "pk", None)).first()
    if agent is None:
        raise NotFound("You are not an agent.")
    return agent
