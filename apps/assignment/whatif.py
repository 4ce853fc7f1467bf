"""Routing what-if: replay a queue's recent arrivals and its agents' presence through the
engine's routing rules with a draft routing config, in memory, beside what really happened."""

from __future__ import annotations

import heapq
import math
import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from apps.assignment.models import AgentPresenceChange, AgentQueue, Presence
from apps.assignment.routing import DEFAULT_WEIGHT, Candidate, Pools, Routing, place_in_tiers, units_for
from apps.cases.models import OPEN_STATUSES, Case, CaseEvent, EventKind, Queue, QueueConfig

# The beat interval of the micro-batch (apps/assignment/migrations/0005_beat_schedules.py).
BATCH_SECONDS = 2
# Events that move a case between agents, open and closed, or queues.
_KINDS = (EventKind.CREATED, EventKind.ASSIGNED, EventKind.OFFERED, EventKind.OFFER_ACCEPTED,
          EventKind.OFFER_DECLINED, EventKind.OFFER_EXPIRED, EventKind.STATUS_CHANGED, EventKind.TRANSFERRED)
_RELEASES = (EventKind.OFFER_DECLINED, EventKind.OFFER_EXPIRED)
_OPEN = frozenset(OPEN_STATUSES)
# Timeline items that happen at one instant apply in this order, before the batch of their step.
_PRESENCE, _LOAD, _LEAVE, _ARRIVE = range(4)


@dataclass
class Summary:
    assigned: int = 0
    # Cases no agent got: by the end of the window, or before they were resolved for real.
    waiting_unassigned: int = 0
    median_wait_s: float | None = None
    p90_wait_s: float | None = None
    # How many cases at some batch found agents of the queue available but none with the skills
    # needed / agents with the skills but none with room / no agent of the queue available.
    # The event log does not say why real cases waited: None in the actual summary.
    waited_for_skill: int | None = None
    waited_for_capacity: int | None = None
    waited_for_presence: int | None = None
    load_by_agent: dict[str, int] = field(default_factory=dict)


@dataclass
class WhatIf:
    cases: int
    actual: Summary
    draft: Summary
    start: datetime
    end: datetime
    step_seconds: int

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["start"], doc["end"] = self.start.isoformat(), self.end.isoformat()
        return doc


@dataclass
class _Arrival:
    case_id: Any
    at: float
    channel: str
    priority: int
    leaves_at: float | None = None  # resolved, closed or transferred away for real
    actual_at: float | None = None  # first assigned or offer accepted for real
    actual_agent: int | None = None


def wait_percentiles(waits: list[float]) -> tuple[float | None, float | None]:
    """Median (mean of the middle two for an even count) and p90 by nearest rank: the smallest
    wait that at least 90% of the cases did not exceed."""
    if not waits:
        return None, None
    ordered = sorted(waits)
    return float(statistics.median(ordered)), float(ordered[math.ceil(0.9 * len(ordered)) - 1])


def routing_what_if(*, queue: Queue, routing: dict, hours: int = 24, now: datetime | None = None,
                    step_seconds: int = BATCH_SECONDS) -> WhatIf:
    """Replay the last `hours` of the queue's arrivals with `routing` as its routing document.

    Reads five queries, however many cases, and writes nothing. The draft runs as the engine
    would, one batch every `step_seconds`: the agents who work the queue, each available or not
    as their presence history says (the state at the window's start is their last change before
    it; with no history, their current presence unless history starts inside the window, then
    offline), carrying the load other cases really put on them (by event log) plus the cases the
    draft gives them, which they hold until the case was really resolved, closed or transferred.
    An assignment is taken at once: offers are neither declined nor left to expire.
    """
    end = now or timezone.now()
    start = end - timedelta(hours=hours)
    t0, t_end = start.timestamp(), end.timestamp()
    rule = Routing.from_config(routing)

    agents, names = _agents(queue)
    presence_at_start, presence_moves = _presence(agents, start, end)
    active = {qid: Routing.from_config(doc) for qid, doc in
               QueueConfig.objects.filter(is_active=True).values_list("queue_id", "routing")}
    arrivals, holds = _history(queue, agents, start, end, active, names)

    actual = _actual(arrivals, names)
    draft = _simulate(
        queue_id=queue.pk, rule=rule, agents=agents, names=names, arrivals=arrivals, holds=holds,
        presence_at_start=presence_at_start, presence_moves=presence_moves,
        t0=t0, t_end=t_end, step=step_seconds)
    return WhatIf(cases=len(arrivals), actual=actual, draft=draft, start=start, end=end,
                  step_seconds=step_seconds)


# Reads ----------------------------------------------------------------------------------------


def _agents(queue: Queue) -> tuple[dict[int, dict], dict[int, str]]:
    """The agents who work the queue: skills, capacity, own channel weights, priority for it,
    current presence."""
    agents, names = {}, {}
    rows = (AgentQueue.objects.filter(queue=queue).order_by("agent_id")
            .values_list("agent_id", "agent__display_name", "agent__skills", "agent__capacity",
                         "agent__channel_weights", "agent__presence", "agent__presence_changed_at",
                         "priority"))
    for agent_id, name, skills, capacity, channel_weights, presence, changed_at, priority in rows:
        names[agent_id] = name
        agents[agent_id] = {"skills": frozenset(skills), "capacity": capacity,
                            "channel_weights": channel_weights or {}, "presence": presence,
                            "changed": changed_at.timestamp() if changed_at else 0.0, "priority": priority}
    return agents, names


def _presence(agents: dict[int, dict], start: datetime, end: datetime) -> tuple[dict[int, tuple], list]:
    """Each agent's (presence, changed at) when the window starts, and the changes inside it."""
    ids = list(agents)
    before = {agent_id: (presence, changed_at.timestamp()) for agent_id, presence, changed_at in
              AgentPresenceChange.objects.filter(agent_id__in=ids, changed_at__lte=start)
              .order_by("agent_id", "-changed_at", "-id").distinct("agent_id")
              .values_list("agent_id", "presence", "changed_at")}
    moves = [(changed_at.timestamp(), agent_id, presence) for agent_id, presence, changed_at in
             AgentPresenceChange.objects.filter(agent_id__in=ids, changed_at__gt=start, changed_at__lte=end)
             .order_by("changed_at", "id").values_list("agent_id", "presence", "changed_at")]
    moved = {agent_id for _, agent_id, _ in moves}
    at_start = {}
    for agent_id, agent in agents.items():
        if agent_id in before:
            at_start[agent_id] = before[agent_id]
        elif agent_id in moved:
            at_start[agent_id] = (Presence.OFFLINE, 0.0)
        else:
            at_start[agent_id] = (agent["presence"], agent["changed"])
    return at_start, moves


def _history(queue: Queue, agents: dict[int, dict], start: datetime, end: datetime,
             weights: dict[int, Routing], names: dict[int, str]) -> tuple[list[_Arrival], list]:
    """The queue's arrivals in the window with what really happened to them, and the load every
    other case put on the queue's agents (`_agents`) during the window: (agent, from, to or None,
    weight)."""
    touched = CaseEvent.objects.filter(created_at__gt=start, created_at__lte=end, kind__in=_KINDS)
    # A case held since before the window with no event inside it still takes capacity.
    held = Case.objects.filter(assigned_agent_id__in=list(agents), status__in=OPEN_STATUSES)
    cases = Q(case_id__in=touched.values("case_id")) | Q(case_id__in=held.values("pk"))
    rows = (CaseEvent.objects.filter(cases, kind__in=_KINDS, created_at__lte=end)
            .order_by("case_id", "id")
            .values_list("case_id", "kind", "created_at", "case__queue_id", "case__channel", "case__priority",
                         "data__to", "data__agent", "data__name", "data__queue", "data__status",
                         "data__channel", "data__priority", "data__unassigned"))
    t0 = start.timestamp()
    arrivals: list[_Arrival] = []
    holds: list[tuple[int, float, float | None, int]] = []
    case_rows: list[tuple] = []
    for row in rows:
        if case_rows and case_rows[0][0] != row[0]:
            _one_case(case_rows, queue, agents, t0, weights, names, arrivals, holds)
            case_rows = []
        case_rows.append(row)
    if case_rows:
        _one_case(case_rows, queue, agents, t0, weights, names, arrivals, holds)
    arrivals.sort(key=lambda a: a.at)
    return arrivals, holds


def _one_case(rows, queue, agents, t0, weights, names, arrivals, holds) -> None:
    case_id, _, _, queue_id, channel, priority = rows[0][:6]
    arrival = None
    holder, is_open, since = None, True, None
    weight = weights[queue_id].weight(channel) if queue_id in weights else DEFAULT_WEIGHT
    own: list[tuple] = []

    def units(agent_id: int) -> int:
        return units_for(agents[agent_id]["channel_weights"], channel, weight)

    def hold_changes(new_holder, new_open, at):
        nonlocal holder, is_open, since
        was = holder if is_open else None
        now_held = new_holder if new_open else None
        if was != now_held:
            if was is not None and since is not None and was in agents and at > t0:
                own.append((was, since, at, units(was)))
            since = at
        holder, is_open = new_holder, new_open

    for (_, kind, created_at, _, _, _, d_to, d_agent, d_name, d_queue, d_status, d_channel,
         d_priority, d_unassigned) in rows:
        at = created_at.timestamp()
        if kind == EventKind.CREATED:
            is_open = d_status in _OPEN if d_status else True
            if at > t0 and (d_queue == queue.slug or (d_queue is None and queue_id == queue.pk)):
                arrival = _Arrival(case_id=case_id, at=at, channel=d_channel or channel,
                                   priority=d_priority or priority)
            continue
        if kind in (EventKind.ASSIGNED, EventKind.OFFERED):
            if d_to is not None and d_agent:
                names.setdefault(d_to, d_agent)
            if arrival is not None and arrival.actual_at is None and kind == EventKind.ASSIGNED and d_to:
                arrival.actual_at, arrival.actual_agent = at, d_to
            hold_changes(d_to, is_open, at)
        elif kind == EventKind.OFFER_ACCEPTED:
            if d_agent is not None and d_name:
                names.setdefault(d_agent, d_name)
            if arrival is not None and arrival.actual_at is None:
                arrival.actual_at, arrival.actual_agent = at, d_agent
        elif kind in _RELEASES:
            hold_changes(None, is_open, at)
        elif kind == EventKind.TRANSFERRED:
            if arrival is not None and arrival.leaves_at is None:
                arrival.leaves_at = at
            hold_changes(None if d_unassigned else holder, is_open, at)
        elif kind == EventKind.STATUS_CHANGED:
            now_open = d_to in _OPEN
            if arrival is not None and arrival.leaves_at is None and not now_open:
                arrival.leaves_at = at
            hold_changes(holder, now_open, at)
    if arrival is not None:
        # Its real holds are what the draft replaces.
        arrivals.append(arrival)
        return
    holds.extend(own)
    if holder is not None and is_open and since is not None and holder in agents:
        holds.append((holder, since, None, units(holder)))


# What happened, and what the draft would do -------------------------------------------------


def _summary(waits: list[float], by_agent: Counter, total: int, names: dict[int, str]) -> Summary:
    median, p90 = wait_percentiles(waits)
    loads = {names.get(agent_id, str(agent_id)): n for agent_id, n in sorted(by_agent.items())}
    return Summary(assigned=len(waits), waiting_unassigned=total - len(waits), median_wait_s=median,
                   p90_wait_s=p90, load_by_agent=loads)


def _actual(arrivals: list[_Arrival], names: dict[int, str]) -> Summary:
    waits, by_agent = [], Counter()
    for a in arrivals:
        if a.actual_at is not None:
            waits.append(round(a.actual_at - a.at, 3))
            by_agent[a.actual_agent] += 1
    return _summary(waits, by_agent, len(arrivals), names)


def _simulate(*, queue_id, rule: Routing, agents, names, arrivals, holds, presence_at_start,
              presence_moves, t0: float, t_end: float, step: int) -> Summary:
    # Everything that changes the state, by time: (at, order, seq, payload).
    timeline: list[tuple] = []
    for at, agent_id, presence in presence_moves:
        timeline.append((at, _PRESENCE, len(timeline), (agent_id, presence)))
    for agent_id, since, until, weight in holds:
        # The engine's idle clock counts from an agent's last assignment, before the window too.
        timeline.append((max(since, t0), _LOAD, len(timeline), (agent_id, weight, since)))
        if until is not None:
            timeline.append((until, _LOAD, len(timeline), (agent_id, -weight, None)))
    for index, a in enumerate(arrivals):
        timeline.append((a.at, _ARRIVE, len(timeline), index))
        if a.leaves_at is not None:
            timeline.append((a.leaves_at, _LEAVE, len(timeline), index))
    heapq.heapify(timeline)

    presence = {agent_id: p for agent_id, (p, _) in presence_at_start.items()}
    idle = {agent_id: changed for agent_id, (_, changed) in presence_at_start.items()}
    load = dict.fromkeys(agents, 0)
    sim_weight = {index: rule.weight(a.channel) for index, a in enumerate(arrivals)}
    held_by: dict[int, tuple[int, int]] = {}  # arrival index -> (agent the draft gave it to, units)
    waiting: dict[int, float] = {}  # arrival index -> not looked at again before (epoch seconds)
    waits: list[float] = []
    by_agent: Counter = Counter()
    for_skill, for_capacity, for_presence = set(), set(), set()
    retry = settings.ASSIGNMENT_RETRY_SECONDS
    batch_size = settings.ASSIGNMENT_BATCH_SIZE
    tiers = sorted({agent["priority"] for agent in agents.values()}) or [1]

    k = 0
    last_k = math.floor((t_end - t0) / step)
    while True:
        due_at = min(waiting.values(), default=None)
        next_at = timeline[0][0] if timeline else None
        upcoming = [t for t in (due_at, next_at) if t is not None]
        if not upcoming:
            break
        k = max(k + 1, math.ceil((min(upcoming) - t0) / step))
        if k > last_k:
            break
        now = t0 + k * step
        while timeline and timeline[0][0] <= now:
            at, order, _, payload = heapq.heappop(timeline)
            if order == _PRESENCE:
                agent_id, value = payload
                if presence.get(agent_id) != value:
                    presence[agent_id], idle[agent_id] = value, at
            elif order == _LOAD:
                agent_id, weight, assigned_at = payload
                load[agent_id] += weight
                if assigned_at is not None:
                    idle[agent_id] = max(idle[agent_id], assigned_at)
            elif order == _ARRIVE:
                waiting[payload] = at
            else:  # leaves: resolved or transferred for real
                waiting.pop(payload, None)
                held = held_by.pop(payload, None)
                if held is not None:
                    load[held[0]] -= held[1]
        due = sorted((i for i, not_before in waiting.items() if not_before <= now),
                     key=lambda i: (-arrivals[i].priority, arrivals[i].at))[:batch_size]
        if not due:
            continue
        candidates = [Candidate(agent_id=agent_id, skills=agent["skills"], capacity=agent["capacity"],
                                        load=load[agent_id], idle_since=idle[agent_id],
                                        queue_priority={queue_id: agent["priority"]},
                                        channel_weights=agent["channel_weights"])
                      for agent_id, agent in agents.items() if presence[agent_id] == Presence.AVAILABLE]
        pools = Pools(candidates, removed_before={}, now=now)
        pending = [(i, queue_id, rule.skills_needed(waited_seconds=now - arrivals[i].at), sim_weight[i],
                    rule.strategy, (), arrivals[i].channel) for i in due]
        choices = place_in_tiers(pools, pending, tiers)
        for i in due:
            choice = choices[i]
            winner = choice.winner
            if winner is None:
                waiting[i] = now + retry
                if choice.removed["full"]:
                    for_capacity.add(i)
                elif choice.removed["missing_skill"]:
                    for_skill.add(i)
                else:
                    for_presence.add(i)
                continue
            del waiting[i]
            held_by[i] = (winner.agent_id, choice.weight)
            load[winner.agent_id] += choice.weight
            idle[winner.agent_id] = now
            waits.append(round(now - arrivals[i].at, 3))
            by_agent[winner.agent_id] += 1
    summary = _summary(waits, by_agent, len(arrivals), names)
    summary.waited_for_skill, summary.waited_for_capacity = len(for_skill), len(for_capacity)
    summary.waited_for_presence = len(for_presence)
    return summary
