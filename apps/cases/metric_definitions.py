"""The support metrics, defined once: how a case's event history becomes its facts (AHT, time to
resolve, manual actions, reopen and follow-up windows...), what each case adds to the per-day
rollups, and the ratios read back from them. Pure logic, no ORM (the README lists the formulas)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo
from typing import Any

from django.conf import settings
from django.utils import timezone

# Kinds and statuses by value, so this module needs no models.
RESOLVED, REOPENED, PENDING_CUSTOMER = "resolved", "reopened", "pending_customer"
# Manual agent actions (MTR): edits, notes, transitions, replies, transfers by a human actor.
MANUAL_KINDS = frozenset({"field_changed", "note", "status_changed", "message", "transferred"})
# Service accounts (inbound email, softphone...) act for no person.
SYSTEM_USER_PREFIX = "system:"
# Upper bounds (seconds) of the time-to-first-offer histogram: a chat case is offered in seconds,
# a backlog in hours (the same bounds as the assignment app's sliding-window histogram).
OFFER_WAIT_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)

# The additive counters of a rollup row (apps.cases.models.MetricCounters). A case adds its
# "created" part on the day it was created and its "resolved" part on the day it was first resolved.
CREATED_COUNTERS = ("created", "first_offer_n", "first_offer_seconds", "first_response_n",
                    "first_response_seconds", "first_response_breached", "offers_expired")
RESOLVED_COUNTERS = ("resolved", "resolve_seconds", "handled", "handle_seconds", "manual_actions",
                     "dwr_ok", "dwr_reopened", "fcr_ok", "fcr_failed", "resolution_breached")
COUNTERS = CREATED_COUNTERS + RESOLVED_COUNTERS
FLOAT_COUNTERS = frozenset({"first_offer_seconds", "first_response_seconds", "resolve_seconds",
                            "handle_seconds"})
BUCKETS = "offer_wait_buckets"  # an int array, one cumulative count per bound plus +Inf


# The key of a queue config's `sla` that sets the queue's window (validated by the config schema).
REOPEN_WINDOW_KEY = "reopen_window_days"


def reopen_window(sla: Mapping[str, Any] | None = None) -> timedelta:
    """The DWR/FCR window of a queue, from its active config's `sla` (the queue a case was first
    resolved in, as the case counts there), else the platform's METRICS_REOPEN_WINDOW_DAYS."""
    days = (sla or {}).get(REOPEN_WINDOW_KEY) or settings.METRICS_REOPEN_WINDOW_DAYS
    return timedelta(days=days)


@dataclass(frozen=True)
class Event:
    """The part of a CaseEvent the metrics read; `human` is true for a person's action."""

    id: int
    kind: str
    data: Mapping[str, Any]
    at: datetime
    human: bool


@dataclass
class CaseFacts:
    """What one case's history says, as stored in CaseMetricFacts (one row per case)."""

    queue_id: int
    agent_id: int | None
    created_at: datetime
    first_offer_at: datetime | None = None
    accepted_at: datetime | None = None
    first_response_at: datetime | None = None
    first_resolved_at: datetime | None = None
    reopened_at: datetime | None = None  # first reopen after the first resolution
    followup_at: datetime | None = None  # first follow-up case after the first resolution
    handle_seconds: float | None = None
    agent_contacts: int = 0
    manual_actions: int = 0
    offers_expired: int = 0
    first_response_target: int | None = None  # seconds, from the queue's SLA
    resolution_target: int | None = None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else max(0.0, (end - start).total_seconds())


def _manual(e: Event, outbound: bool) -> bool:
    """A person's own action. A move into 'assigned' only follows an assignment or an accepted
    offer (recorded by the same actor), and an inbound message is the customer's."""
    if not e.human or e.kind not in MANUAL_KINDS:
        return False
    if e.kind == "message":
        return outbound
    return not (e.kind == "status_changed" and e.data.get("to") == "assigned")


def case_facts(*, queue_id: int, created_at: datetime, events: Iterable[Event],
               queue_ids_by_slug: Mapping[str, int], followups: Iterable[datetime] = (),
               sla_by_queue: Mapping[int, Mapping[str, Any]] | None = None) -> CaseFacts:
    """Fold a case's whole history, in time order (late events sort into place), into its facts.

    `queue_id` is the case's queue now; `followups` are the creation times of the other cases of
    the same customer and delivery.
    """
    facts = CaseFacts(queue_id=queue_id, agent_id=None, created_at=created_at)
    holder: int | None = None
    status: str | None = None
    pending_since: datetime | None = None
    pending = 0.0
    queue = None
    resolved_queue = resolved_agent = None
    for e in sorted(events, key=lambda e: (e.at, e.id)):
        data = e.data
        resolved = facts.first_resolved_at is not None
        outbound = data.get("direction") == "outbound"
        if _manual(e, outbound):
            facts.manual_actions += 1
        if e.kind == "created":
            status = data.get("status")
            queue = queue_ids_by_slug.get(data.get("queue"), queue)
        elif e.kind in ("offered", "assigned") and data.get("to") is not None:
            holder = data["to"]
            facts.first_offer_at = facts.first_offer_at or e.at
            if e.kind == "assigned":  # without offers, an assignment is the acceptance
                facts.accepted_at = facts.accepted_at or e.at
        elif e.kind == "offer_accepted":
            holder = data.get("agent", holder)
            facts.accepted_at = facts.accepted_at or e.at
        elif e.kind in ("assigned", "offer_declined", "offer_expired"):
            holder = None
            facts.offers_expired += e.kind == "offer_expired"
        elif e.kind == "transferred":
            holder = None
            queue = queue_ids_by_slug.get(data.get("to"), queue)
        elif e.kind == "message" and outbound and not data.get("internal"):
            facts.first_response_at = facts.first_response_at or e.at
            facts.agent_contacts += not resolved
        elif e.kind == "status_changed":
            to = data.get("to")
            if status == PENDING_CUSTOMER and pending_since is not None and not resolved:
                pending += _seconds(max(pending_since, facts.accepted_at or e.at), e.at) or 0.0
            pending_since = e.at if to == PENDING_CUSTOMER else None
            status = to
            if to == RESOLVED and not resolved:
                facts.first_resolved_at = e.at
                resolved_queue, resolved_agent = queue, holder
                if facts.accepted_at is not None:
                    facts.handle_seconds = max(0.0, _seconds(facts.accepted_at, e.at) - pending)
            elif to == REOPENED and resolved and facts.reopened_at is None:
                facts.reopened_at = e.at
    if facts.first_resolved_at is not None:
        facts.queue_id = resolved_queue or queue_id
        facts.agent_id = resolved_agent
        facts.followup_at = min((t for t in followups if t > facts.first_resolved_at), default=None)
    else:
        facts.queue_id = queue or queue_id
        facts.agent_id = holder
    sla = (sla_by_queue or {}).get(facts.queue_id) or {}
    if sla.get("first_response_minutes"):
        facts.first_response_target = int(sla["first_response_minutes"]) * 60
    if sla.get("resolution_minutes"):
        facts.resolution_target = int(sla["resolution_minutes"]) * 60
    return facts


def settles_at(facts: CaseFacts, window: timedelta) -> datetime | None:
    """When "not reopened" / "no follow-up" becomes final: the window after the first resolution."""
    return None if facts.first_resolved_at is None else facts.first_resolved_at + window


def _within(at: datetime | None, facts: CaseFacts, window: timedelta) -> bool:
    return at is not None and at <= facts.first_resolved_at + window


def window_outcomes(facts: CaseFacts, *, now: datetime, window: timedelta) -> tuple[bool | None, bool | None]:
    """(DWR, FCR) of a resolved case: True or False once decided, None while still open.

    DWR fails as soon as a reopen within the window is seen, and holds once the window has passed
    without one. FCR fails as soon as the case had more than one agent contact, a reopen or a
    follow-up case within the window, and holds once the window has passed without any.
    """
    if facts.first_resolved_at is None:
        return None, None
    over = now >= facts.first_resolved_at + window
    reopened = _within(facts.reopened_at, facts, window)
    dwr = False if reopened else (True if over else None)
    failed = reopened or facts.agent_contacts > 1 or _within(facts.followup_at, facts, window)
    fcr = False if failed else (True if over else None)
    return dwr, fcr


def _bucket_counts(seconds: float | None) -> list[int]:
    if seconds is None:
        return [0] * (len(OFFER_WAIT_BUCKETS) + 1)
    return [int(seconds <= bound) for bound in OFFER_WAIT_BUCKETS] + [1]


def day_of(at: datetime, tz: tzinfo | None = None) -> date:
    """The date in TIME_ZONE (or `tz`: callers in a loop look the zone up once)."""
    return at.astimezone(tz or timezone.get_current_timezone()).date()


Key = tuple[date, int, int | None]  # (day, queue id, agent id or None)


def contribution(facts: CaseFacts, *, now: datetime, window: timedelta) -> dict[Key, dict[str, Any]]:
    """What the case adds to the rollups, by (day, queue, agent): the created part on its creation
    day, the resolved part on its first-resolution day (both under its queue and agent)."""
    first_offer = _seconds(facts.created_at, facts.first_offer_at)
    first_response = _seconds(facts.created_at, facts.first_response_at)
    created = {
        "created": 1,
        "first_offer_n": int(first_offer is not None), "first_offer_seconds": first_offer or 0.0,
        "first_response_n": int(first_response is not None), "first_response_seconds": first_response or 0.0,
        "first_response_breached": int(first_response is not None and facts.first_response_target is not None
                                       and first_response > facts.first_response_target),
        "offers_expired": facts.offers_expired,
        BUCKETS: _bucket_counts(first_offer),
    }
    tz = timezone.get_current_timezone()
    parts = {(day_of(facts.created_at, tz), facts.queue_id, facts.agent_id): created}
    if facts.first_resolved_at is not None:
        resolve = _seconds(facts.created_at, facts.first_resolved_at)
        dwr, fcr = window_outcomes(facts, now=now, window=window)
        resolved = {
            "resolved": 1, "resolve_seconds": resolve,
            "handled": int(facts.handle_seconds is not None), "handle_seconds": facts.handle_seconds or 0.0,
            "manual_actions": facts.manual_actions,
            "dwr_ok": int(dwr is True), "dwr_reopened": int(dwr is False),
            "fcr_ok": int(fcr is True), "fcr_failed": int(fcr is False),
            "resolution_breached": int(facts.resolution_target is not None
                                       and resolve > facts.resolution_target),
        }
        key = (day_of(facts.first_resolved_at, tz), facts.queue_id, facts.agent_id)
        parts[key] = {**parts.get(key, {}), **resolved}
    return parts


def contribution_delta(old: Mapping[Key, Mapping[str, Any]], new: Mapping[Key, Mapping[str, Any]],
                       into: dict[Key, dict[str, Any]]) -> None:
    """Add new minus old into `into`, by key: what applying the case's new facts changes."""
    for sign, parts in ((-1, old), (1, new)):
        for key, values in parts.items():
            counters_add(into.setdefault(key, {}), values, sign=sign)


def counters_add(row: dict[str, Any], values: Mapping[str, Any], *, sign: int = 1) -> None:
    for name, value in values.items():
        if name == BUCKETS:
            current = row.get(name) or [0] * len(value)
            row[name] = [a + sign * b for a, b in zip(current, value, strict=True)]
        else:
            row[name] = row.get(name, 0) + sign * value


def ratios(totals: Mapping[str, Any]) -> dict[str, float | None]:
    """The metrics of summed counters (a day, a queue, an agent, any range); None without data."""

    def share(part: str, *whole: str) -> float | None:
        total = sum(totals.get(name) or 0 for name in whole)
        return (totals.get(part) or 0) / total if total else None

    return {
        "aht_seconds": share("handle_seconds", "handled"),
        "time_to_resolve_seconds": share("resolve_seconds", "resolved"),
        "mtr": share("manual_actions", "resolved"),
        "dwr": share("dwr_ok", "dwr_ok", "dwr_reopened"),
        "fcr": share("fcr_ok", "fcr_ok", "fcr_failed"),
        "time_to_first_offer_seconds": share("first_offer_seconds", "first_offer_n"),
        "time_to_first_response_seconds": share("first_response_seconds", "first_response_n"),
    }
