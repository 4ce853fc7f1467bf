"""Phone screen pop: the softphone reports a call an agent answered or ended; the caller's newest
open case (or a new phone case) is assigned to the agent and opened in their workspace tabs, and
both ends of the call go into the case's timeline."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from apps.assignment.models import Agent, Call
from apps.assignment.realtime import agent_screen_pop
from apps.cases import services as case_services
from apps.cases.models import OPEN_STATUSES, Case, CaseEvent, Channel, Location, Queue, Source
from apps.core.errors import ApplicationError, Conflict, InvalidInput
from apps.core.feed import feed_writer_enter

ANSWERED = "answered"
ENDED = "ended"
CALL_EVENTS = (ANSWERED, ENDED)
# The account the softphone webhook acts as (its Idempotency-Keys belong to it). A name the
# admin's user forms refuse (the colon), so no person can be given it.
SOFTPHONE_USERNAME = "system:softphone"
# Advisory-lock classes (the two-int4 key space): one call id at a time, and one caller at a time
# (two calls of one customer at once must find one case, not open two).
_CALL_LOCK_CLASS = 0x4341
_CALLER_LOCK_CLASS = 0x4355
# E.164: a country code that never starts with 0, at most 15 digits in all.
_E164 = re.compile(r"\+[1-9]\d{5,14}")
# What people and phone systems put between digits.
_SEPARATORS = re.compile(r"[\s().\-/]")
MAX_CALL_DURATION_SECONDS = 24 * 3600


def softphone_user():
    """The webhook's own account: active, no password, no role."""
    user, created = get_user_model()._default_manager.get_or_create(
        username=SOFTPHONE_USERNAME, defaults={"is_active": True})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


def phone_number_normalise(raw: str) -> str:
    """The caller's number in E.164 ("+4930123456") as customer_ref holds it; "" for a withheld
    number. Refuses anything else: a national number would match no customer."""
    if not raw.strip():
        return ""
    number = _SEPARATORS.sub("", raw)
    if number.startswith("00"):
        number = "+" + number[2:]
    if _E164.fullmatch(number) is None:
        raise InvalidInput("The caller's number is not an international number.", errors={
            "caller": ["Give the number with its country code, e.g. +4930123456 (up to 15 digits)."]})
    return number


def _agent(ref: int | str) -> Agent:
    agents = Agent.objects.select_related("user")
    found = agents.filter(pk=ref) if isinstance(ref, int) else agents.filter(user__username=ref)
    agent = found.first()
    if agent is None:
        raise InvalidInput("No such agent.", errors={"agent": ["No agent with this id or username."]})
    return agent


def _lock(lock_class: int, key: str) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [lock_class, key])


def _case_for_caller(caller: str) -> tuple[Case, bool]:
    """The caller's newest open case worked here, else a new phone case; (case, created)."""
    if caller:
        _lock(_CALLER_LOCK_CLASS, caller)
        case = (Case.objects.filter(customer_ref=caller, status__in=OPEN_STATUSES, location=Location.CASEHUB)
                .order_by("-created_at").first())
        if case is not None:
            return case, False
    slug = settings.CASEHUB_PHONE_QUEUE
    queue = Queue.objects.filter(slug=slug, is_active=True).first()
    if queue is None:
        raise Conflict(f"No active queue '{slug}' takes new phone cases.",
                       errors={"queue": ["Set CASEHUB_PHONE_QUEUE to the slug of an active queue."]},
                       code="no_phone_queue")
    subject = f"Phone call from {caller}" if caller else "Phone call (number withheld)"
    try:
        case = case_services.case_create(queue=queue, fields={}, source=Source.API, channel=Channel.PHONE,
                                         subject=subject, customer_ref=caller)
    except ApplicationError as exc:
        raise Conflict(f"Queue '{slug}' cannot open a case from a call: {exc.message}",
                       errors={"queue": ["The phone queue must accept a case without fields."]},
                       code="no_phone_queue") from None
    return case, True


def _duration_text(seconds: int | None) -> str:
    if seconds is None:
        return "Phone call ended."
    minutes, rest = divmod(seconds, 60)
    length = f"{minutes} min {rest} s" if minutes else f"{rest} s"
    return f"Phone call ended after {length}."


@dataclass(frozen=True)
class CallAnswer:
    """What the webhook answers for one (call, event): built from the stored call alone, so a
    replay gets the first answer again."""

    call_id: str
    event: str
    case: Case
    agent_id: int | None
    created_case: bool
    at: datetime
    duration_seconds: int | None


def _answer(call: Call, event: str) -> CallAnswer:
    ended = event == ENDED
    return CallAnswer(call_id=call.call_id, event=event, case=call.case, agent_id=call.agent_id,
                      created_case=call.created_case, at=call.ended_at if ended else call.answered_at,
                      duration_seconds=call.duration_seconds if ended else None)


def _screen_pop_on_commit(call: Call) -> None:
    case = call.case
    document = {"id": str(case.pk), "subject": case.subject, "queue": case.queue.slug, "status": case.status,
                "priority": case.priority, "channel": case.channel, "call_id": call.call_id,
                "caller": call.caller}
    agent_id = call.agent_id
    transaction.on_commit(lambda: agent_screen_pop(agent_id, document))


def call_event_record(*, call_id: str, event: str, caller: str, agent: int | str,
                      duration_seconds: int | None = None) -> CallAnswer:
    """Record one softphone event; idempotent per (call_id, event).

    answered: the caller's newest open case (by customer_ref) or a new phone case in
    CASEHUB_PHONE_QUEUE is assigned to the agent (an agent at capacity is refused: Conflict, and
    nothing is written), noted in the timeline, and opened in the agent's tabs after commit.
    ended: the duration goes into the timeline; an end whose answer never arrived does the
    answer's work first (without the screen pop: the call is over).
    A replay of an event recorded before writes nothing and answers as the first time did.
    """
    if event not in CALL_EVENTS:
        raise InvalidInput("Unknown call event.", errors={"event": [f"One of: {', '.join(CALL_EVENTS)}."]})
    if duration_seconds is not None and event != ENDED:
        raise InvalidInput("Only an ended call has a duration.",
                           errors={"duration_seconds": ["Send it with the 'ended' event only."]})
    number = phone_number_normalise(caller)
    with transaction.atomic():
        feed_writer_enter(CaseEvent)  # the fence before any other lock (apps.core.feed)
        _lock(_CALL_LOCK_CLASS, call_id)
        call = Call.objects.select_related("case__queue", "agent__user").filter(call_id=call_id).first()
        if call is None:
            call = _call_answer(call_id=call_id, caller=number, agent=_agent(agent))
            if event == ANSWERED:
                _screen_pop_on_commit(call)
        if event == ENDED and call.ended_at is None:
            call.ended_at, call.duration_seconds = timezone.now(), duration_seconds
            call.save(update_fields=["ended_at", "duration_seconds"])
            case_services.case_add_note(case=call.case, body=_duration_text(duration_seconds),
                                        actor=call.agent.user if call.agent else None)
        return _answer(call, event)


def _call_answer(*, call_id: str, caller: str, agent: Agent) -> Call:
    case, created = _case_for_caller(caller)
    # Already the agent's: case_assign leaves it as it is.
    case = case_services.case_assign(case=case, agent=agent, actor=agent.user)
    who = caller or "a withheld number"
    case_services.case_add_note(case=case, body=f"Phone call from {who} answered by {agent}.",
                                actor=agent.user)
    return Call.objects.create(call_id=call_id, caller=caller, case=case, agent=agent, created_case=created,
                               answered_at=timezone.now())
