"""Routing rules of a queue, as pure logic: which skills a case needs (optional ones relax after
a wait), what a case weighs by channel, and how a strategy ranks the agents that qualify."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

MOST_SPARE_CAPACITY = "most_spare_capacity"
ROUND_ROBIN = "round_robin"
STRATEGIES = (MOST_SPARE_CAPACITY, ROUND_ROBIN)
DEFAULT_WEIGHT = 1
# The rules that remove agents from a case's pool, in the order they apply.
RULES = ("offline", "stale_heartbeat", "not_in_queue", "missing_skill", "full")
TOP_CANDIDATES = 3


@dataclass(frozen=True)
class Routing:
    """A queue config's `routing` document, read once per batch."""

    required_skills: frozenset[str] = frozenset()
    optional_skills: frozenset[str] = frozenset()
    relax_after_seconds: int | None = None
    channel_weights: Mapping[str, int] = field(default_factory=dict)
    strategy: str = MOST_SPARE_CAPACITY

    @classmethod
    def from_config(cls, routing: Mapping[str, Any] | None) -> Routing:
        routing = routing or {}
        # `skills` is the older name of the required skills.
        required = set(routing.get("required_skills", ())) | set(routing.get("skills", ()))
        return cls(
            required_skills=frozenset(required),
            optional_skills=frozenset(routing.get("optional_skills", ())) - required,
            relax_after_seconds=routing.get("relax_after_seconds"),
            channel_weights=dict(routing.get("channel_weights", {})),
            strategy=routing.get("strategy", MOST_SPARE_CAPACITY),
        )

    def weight(self, channel: str) -> int:
        return int(self.channel_weights.get(channel, DEFAULT_WEIGHT))

    def skills_needed(self, *, waited_seconds: float) -> frozenset[str]:
        """Required skills, plus the optional ones until the case has waited past relax-after."""
        relaxed = self.relax_after_seconds is not None and waited_seconds >= self.relax_after_seconds
        return self.required_skills if relaxed else self.required_skills | self.optional_skills


@dataclass
class Candidate:
    """An agent as the engine sees it during one batch."""

    agent_id: int
    skills: frozenset[str]
    capacity: int
    load: int
    idle_since: float  # epoch seconds of the last assignment or presence change
    queue_priority: dict[int, int]  # queue id -> the agent's priority for it (1 first)

    @property
    def spare(self) -> int:
        return self.capacity - self.load


def score(candidate: Candidate, strategy: str, now: float) -> float:
    """Higher is better: spare units, or seconds idle for round robin."""
    if strategy == ROUND_ROBIN:
        return round(now - candidate.idle_since, 3)
    return candidate.spare


@dataclass
class Choice:
    winner: Candidate | None
    removed: dict[str, int]
    top: list[tuple[int, float]]


def choose(*, pool: Iterable[Candidate], queue_id: int, needed: frozenset[str], weight: int,
           strategy: str, max_priority: int, removed_before: Mapping[str, int], now: float) -> Choice:
    """The best agent for one case among `pool` (the agents of its queue, available and fresh),
    considering only agents whose priority for the queue is at most `max_priority`."""
    removed = dict.fromkeys(RULES, 0)
    removed.update(removed_before)
    eligible: list[Candidate] = []
    for candidate in pool:
        priority = candidate.queue_priority.get(queue_id)
        if priority is None or priority > max_priority:
            removed["not_in_queue"] += 1
        elif not needed <= candidate.skills:
            removed["missing_skill"] += 1
        elif candidate.spare < weight:
            removed["full"] += 1
        else:
            eligible.append(candidate)
    ranked = heapq.nsmallest(TOP_CANDIDATES, eligible,
                             key=lambda c: (-score(c, strategy, now), c.idle_since, c.agent_id))
    return Choice(winner=ranked[0] if ranked else None, removed=removed,
                  top=[(c.agent_id, score(c, strategy, now)) for c in ranked[:TOP_CANDIDATES]])


def decision(*, choice: Choice | None, strategy: str, outcome: str, batch: str, at: datetime,
             note: str = "") -> dict[str, Any]:
    """The compact record stored on the case (`Case.routing_decision`)."""
    doc: dict[str, Any] = {"outcome": outcome, "batch": batch, "at": at.isoformat(), "strategy": strategy}
    if choice is not None:
        doc["removed"] = {k: v for k, v in choice.removed.items() if v}
        doc["top"] = [[agent_id, value] for agent_id, value in choice.top]
        doc["winner"] = choice.winner.agent_id if choice.winner and outcome == "assigned" else None
    if note:
        doc["note"] = note
    return doc
