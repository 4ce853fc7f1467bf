"""Read-only views of assignment for people: the ops board (backlog, oldest wait, agents' presence
and load, recent decisions) and a case's routing decision explained, each in a constant number of
queries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis
from django.contrib.postgres.aggregates import ArrayAgg
from django.db.models import Count, Min, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.assignment import counters, routing
from apps.assignment.models import Agent, AgentQueue, Presence
from apps.assignment.selectors import agent_loads, heartbeat_ttl
from apps.cases.models import OPEN_STATUSES, WAITING, Case, CaseEvent, EventKind, Location, Queue

RECENT_DECISIONS = 10
RULE_LABELS = {
    "offline": "offline or away",
    "stale_heartbeat": "heartbeat stale",
    "not_in_queue": "not in the queue",
    "missing_skill": "missing a skill",
    "full": "at capacity",
    "declined": "declined it or let the offer expire",
}
STRATEGY_LABELS = {routing.MOST_SPARE_CAPACITY: "most spare capacity", routing.ROUND_ROBIN: "round robin",
                   "pull": "asked for by the agent (next case)"}


@dataclass
class Explained:
    """A routing decision in words: what the engine saw and chose, and why a case still waits."""

    outcome: str  # assigned, waiting, or "" when the engine has not decided yet
    at: datetime | None = None
    strategy: str = ""
    batch: str = ""
    winner: str = ""
    removed: list[tuple[str, str, int]] = field(default_factory=list)  # (rule, label, agents removed)
    top: list[tuple[str, str, bool]] = field(default_factory=list)  # (agent, score, is the winner)
    note: str = ""
    waiting: bool = False  # the case waits for an agent now
    reasons: list[str] = field(default_factory=list)  # why it still waits, when it does
    retry_at: datetime | None = None


def decision_agent_ids(decisions: Iterable[Mapping[str, Any] | None]) -> set[int]:
    ids: set[int] = set()
    for doc in decisions:
        if doc:
            ids.update(row[0] for row in doc.get("top") or () if row)
            if doc.get("winner"):
                ids.add(doc["winner"])
    return ids


def agent_names(ids: Iterable[int]) -> dict[int, str]:
    ids = set(ids)
    return dict(Agent.objects.filter(pk__in=ids).values_list("pk", "display_name")) if ids else {}


def duration_text(seconds: float | None) -> str:
    """42 s, 5 min, 3 h 2 min, 14 d 3 h: a wait read at a glance."""
    if seconds is None:
        return ""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, hours, days = seconds // 60, seconds // 3600, seconds // 86400
    if hours < 1:
        return f"{minutes} min"
    if days < 1:
        return f"{hours} h {minutes % 60} min"
    return f"{days} d {hours % 24} h"


def _score(value: float, strategy: str) -> str:
    if strategy == routing.ROUND_ROBIN:
        return f"idle {value:,.0f} s"
    return f"{value:g} spare unit{'' if value == 1 else 's'}"


def decision_explain(doc: Mapping[str, Any] | None, *, names: Mapping[int, str], waiting: bool,
                     retry_at: datetime | None = None) -> Explained:
    """Pure: `doc` is a `Case.routing_decision` (apps.assignment.routing.decision)."""

    def name(agent_id: int) -> str:
        return names.get(agent_id) or f"agent #{agent_id}"

    if not doc:
        reasons = ["The engine has not looked at this case yet: the next batch claims it."] if waiting else []
        return Explained(outcome="", waiting=waiting, reasons=reasons, retry_at=retry_at)
    strategy = doc.get("strategy") or ""
    removed_counts = doc.get("removed") or {}
    winner = doc.get("winner")
    explained = Explained(
        outcome=doc.get("outcome") or "", at=parse_datetime(doc["at"]) if doc.get("at") else None,
        strategy=STRATEGY_LABELS.get(strategy, strategy), batch=doc.get("batch") or "",
        winner=name(winner) if winner else "", note=doc.get("note") or "", waiting=waiting,
        removed=[(rule, RULE_LABELS.get(rule, rule), int(removed_counts.get(rule, 0)))
                 for rule in routing.RULES],
        top=[(name(agent_id), _score(value, strategy), agent_id == winner)
             for agent_id, value in doc.get("top") or ()],
        retry_at=retry_at,
    )
    if waiting:
        explained.reasons = _waiting_reasons(explained, removed_counts)
    return explained


def _waiting_reasons(explained: Explained, removed: Mapping[str, int]) -> list[str]:
    if explained.outcome == "assigned":
        return ["The latest decision assigned it; it was unassigned since, so the next batch looks again."]
    if explained.outcome == "offered":
        return ["The latest decision offered it; the offer was declined or expired, so the next batch "
                "offers it to someone else."]
    reasons = []
    if explained.note:
        reasons.append(explained.note[:1].upper() + explained.note[1:] + ".")
    if explained.top:
        reasons.append("Agents could take it, but a concurrent batch used their capacity first.")
    counted = [f"{removed[rule]} {label}" for rule, label, _ in explained.removed if removed.get(rule)]
    if counted:
        reasons.append("No agent could take it: " + ", ".join(counted) + ".")
    elif not explained.top and not explained.note:
        reasons.append("No agent could take it: there were no agents at all.")
    return reasons


def case_decision_explained(case: Case) -> Explained:
    """The case's latest decision explained; one query (the agents' names), none without agents."""
    doc = case.routing_decision
    # The rule of cases_case's WAITING condition, on the instance at hand.
    waiting = (case.assigned_agent_id is None and case.status in OPEN_STATUSES
               and case.location == Location.CASEHUB)
    return decision_explain(doc, names=agent_names(decision_agent_ids([doc])), waiting=waiting,
                            retry_at=case.routing_retry_at)


# The board -----------------------------------------------------------------------------------

def agents_loads_for_board(agent_ids: Sequence[int]) -> tuple[dict[int, int], str]:
    """(load by agent, where it came from): the Redis counters the engine reserves from, else the
    sum in PostgreSQL, so the board answers while Redis is down or being rebuilt."""
    try:
        ready, loads, _idle = counters.counters_read(list(agent_ids))
    except redis.RedisError:
        return agent_loads(agent_ids), "PostgreSQL (the Redis counters are unreachable)"
    if not ready:
        return agent_loads(agent_ids), "PostgreSQL (the Redis counters are being rebuilt)"
    return {agent_id: loads.get(agent_id, 0) for agent_id in agent_ids}, "Redis counters"


def assignment_board(now: datetime | None = None) -> dict[str, Any]:
    """Everything the board shows, in six queries whatever the numbers of queues, agents and cases
    (plus none or one for loads: Redis, or PostgreSQL when Redis cannot answer)."""
    now = now or timezone.now()
    fresh_since = now - heartbeat_ttl()
    waiting = Case.objects.filter(WAITING).order_by()
    counts = {row["queue_id"]: row for row in waiting.values("queue_id").annotate(
        n=Count("pk"), oldest=Min("created_at"))}
    oldest = {row["queue_id"]: row for row in waiting.order_by("queue_id", "created_at").distinct("queue_id")
              .values("queue_id", "id", "subject", "created_at", "routing_decision", "routing_retry_at")}
    routable = Q(agent__presence=Presence.AVAILABLE, agent__heartbeat_at__gte=fresh_since)
    staffing = {row["queue_id"]: row for row in AgentQueue.objects.order_by().values("queue_id").annotate(
        linked=Count("pk"), routable=Count("pk", filter=routable))}
    queues = Queue.objects.filter(Q(is_active=True) | Q(pk__in=list(counts))).order_by("name")
    agents = list(Agent.objects.annotate(queue_slugs=ArrayAgg("queue_links__queue__slug", default=[],
                                                              order_by="queue_links__queue__slug"))
                  .order_by("display_name", "pk"))
    loads, loads_source = agents_loads_for_board([a.pk for a in agents])
    given = (EventKind.ASSIGNED, EventKind.OFFERED)
    recent = list(CaseEvent.objects.filter(kind__in=given, data__by="engine").order_by("-id")
                  .values("created_at", "case_id", "case__subject", "case__queue__name", "data",
                          "case__routing_decision")[:RECENT_DECISIONS])
    names = {a.pk: a.display_name for a in agents}

    queue_rows = []
    for queue in queues:
        count, first, staff = counts.get(queue.pk), oldest.get(queue.pk), staffing.get(queue.pk, {})
        queue_rows.append({
            "queue": queue, "waiting": count["n"] if count else 0,
            "oldest_wait": duration_text((now - count["oldest"]).total_seconds()) if count else "",
            "oldest": first and {**first, "explained": decision_explain(
                first["routing_decision"], names=names, waiting=True, retry_at=first["routing_retry_at"])},
            "agents_linked": staff.get("linked", 0), "agents_routable": staff.get("routable", 0),
        })
    agent_rows = []
    for agent in agents:
        load = loads.get(agent.pk, 0)
        fresh = agent.heartbeat_at is not None and agent.heartbeat_at >= fresh_since
        age = (now - agent.heartbeat_at).total_seconds() if agent.heartbeat_at else None
        agent_rows.append({
            "agent": agent, "load": load, "spare": max(agent.capacity - load, 0),
            "full": load >= agent.capacity, "routable": agent.presence == Presence.AVAILABLE and fresh,
            "stale": agent.presence == Presence.AVAILABLE and not fresh,
            "heartbeat_age": duration_text(age),
        })
    decisions = [{
        "at": row["created_at"], "case_id": row["case_id"], "subject": row["case__subject"],
        "queue": row["case__queue__name"], "agent": (row["data"] or {}).get("agent") or "",
        "offered": "expires_at" in (row["data"] or {}),
        "explained": decision_explain(row["case__routing_decision"], names=names, waiting=False),
    } for row in recent]
    return {
        "now": now, "queues": queue_rows, "agents": agent_rows, "decisions": decisions,
        "loads_source": loads_source, "waiting_total": sum(r["waiting"] for r in queue_rows),
        "agents_routable": sum(1 for r in agent_rows if r["routable"]),
    }
