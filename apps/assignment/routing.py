"""Routing rules of a queue, as pure logic: which skills a case needs (optional ones relax after
a wait), what a case weighs by channel (the queue's weight, or the agent's own for that channel),
and how a strategy ranks the agents that qualify."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

MOST_SPARE_CAPACITY = "most_spare_capacity"
ROUND_ROBIN = "round_robin"
STRATEGIES = (MOST_SPARE_CAPACITY, ROUND_ROBIN)
DEFAULT_WEIGHT = 1
# The rules that remove agents from a case's pool, in the order they apply.
RULES = ("offline", "stale_heartbeat", "not_in_queue", "missing_skill", "full", "declined")
TOP_CANDIDATES = 3
DEFAULT_OFFER_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class Routing:
    """A queue config's `routing` document, read once per batch."""

    required_skills: frozenset[str] = frozenset()
    optional_skills: frozenset[str] = frozenset()
    relax_after_seconds: int | None = None
    channel_weights: Mapping[str, int] = field(default_factory=dict)
    strategy: str = MOST_SPARE_CAPACITY
    # An assignment is first an offer the agent accepts in time; a queue may assign directly.
    offers: bool = True
    offer_timeout_seconds: int = DEFAULT_OFFER_TIMEOUT_SECONDS

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
            offers=bool(routing.get("offers", True)),
            offer_timeout_seconds=int(routing.get("offer_timeout_seconds", DEFAULT_OFFER_TIMEOUT_SECONDS)),
        )

    def weight(self, channel: str) -> int:
        return int(self.channel_weights.get(channel, DEFAULT_WEIGHT))

    def skills_needed(self, *, waited_seconds: float) -> frozenset[str]:
        """Required skills, plus the optional ones until the case has waited past relax-after."""
        relaxed = self.relax_after_seconds is not None and waited_seconds >= self.relax_after_seconds
        return self.required_skills if relaxed else self._all_skills

    @cached_property
    def _all_skills(self) -> frozenset[str]:
        # One set per rule, not one per case: the engine looks its pools up by the skills needed,
        # and a set hashes once.
        return self.required_skills | self.optional_skills


@dataclass(slots=True)
class Candidate:
    """An agent as the engine sees it during one batch."""

    agent_id: int
    skills: frozenset[str]
    capacity: int
    load: int
    idle_since: float  # epoch seconds of the last assignment or presence change
    queue_priority: dict[int, int]  # queue id -> the agent's priority for it (1 first)
    # The agent's own weights by channel (Agent.channel_weights), over the queue's: a chat may
    # weigh 3 units for someone new to chat. Empty for most agents.
    channel_weights: Mapping[str, int] = field(default_factory=dict)

    @property
    def spare(self) -> int:
        return self.capacity - self.load

    def weight(self, channel: str, queue_weight: int) -> int:
        return units_for(self.channel_weights, channel, queue_weight)


def units_for(agent_weights: Mapping[str, int] | None, channel: str, queue_weight: int) -> int:
    """The units a case of `channel` takes from an agent: their own weight for the channel, else
    its queue's (`queue_weight`)."""
    return agent_weights.get(channel, queue_weight) if agent_weights else queue_weight


def score(candidate: Candidate, strategy: str, now: float) -> float:
    """Higher is better: spare units, or seconds idle for round robin."""
    if strategy == ROUND_ROBIN:
        return round(now - candidate.idle_since, 3)
    return candidate.spare


def rank_key(candidate: Candidate, strategy: str, now: float) -> tuple[float, float, int]:
    """Ascending order of preference: best score, then idle longest, then lowest id."""
    return (-score(candidate, strategy, now), candidate.idle_since, candidate.agent_id)


@dataclass
class Choice:
    winner: Candidate | None
    removed: dict[str, int]
    top: list[tuple[int, float]]
    weight: int = 0  # the units the case takes from the winner


class _Group:
    """The agents one kind of case may go to (queue, priority tier, skills needed), ranked."""

    __slots__ = ("strategy", "ranked", "spares", "removed", "own_weights")

    def __init__(self, strategy: str, removed: dict[str, int]) -> None:
        self.strategy = strategy
        self.ranked: list[tuple[float, float, int]] = []  # rank keys of members with a spare unit
        self.spares: dict[int, int] = {}  # spare units -> how many members have that many
        self.removed = removed  # the static part of the removed counts
        # Members with weights of their own: a case weighs differently for them, so neither the
        # count by spare units nor the stop at the first full agent holds while there are any.
        self.own_weights: list[Candidate] = []

    def fill(self, members: list[Candidate], now: float) -> None:
        spares = self.spares
        ranked = []
        round_robin = self.strategy == ROUND_ROBIN
        for candidate in members:
            spare = candidate.capacity - candidate.load
            spares[spare] = spares.get(spare, 0) + 1
            if spare > 0:
                # rank_key() inlined: this runs for every member of every group of a batch.
                idle_since = candidate.idle_since
                ranked.append((-round(now - idle_since, 3) if round_robin else -spare, idle_since,
                               candidate.agent_id))
        self.own_weights = [c for c in members if c.channel_weights]
        ranked.sort()
        self.ranked = ranked

    def add(self, candidate: Candidate, key: tuple[float, float, int]) -> None:
        """Count and rank a member; `key` is its rank_key for this group's strategy."""
        spare = candidate.capacity - candidate.load
        self.spares[spare] = self.spares.get(spare, 0) + 1
        if spare > 0:  # weights are at least 1: an agent with no spare unit is never ranked
            bisect.insort(self.ranked, key)

    def drop(self, candidate: Candidate, key: tuple[float, float, int]) -> None:
        spare = candidate.capacity - candidate.load
        self.spares[spare] -= 1
        if spare > 0:
            del self.ranked[bisect.bisect_left(self.ranked, key)]


class Pools:
    """Every agent of a batch, indexed so that choosing costs a few steps instead of a scan.

    Per (queue, priority tier, skills needed) the qualifying agents are kept sorted by the
    strategy's rank and counted by spare units; `take` moves an agent in every group it is in
    as it consumes capacity. `choose` gives the same answer as ranking the whole pool each time.
    """

    def __init__(self, candidates: Iterable[Candidate], *, removed_before: Mapping[str, int],
                 now: float) -> None:
        self.now = now
        self.candidates = list(candidates)
        self.by_id = {candidate.agent_id: candidate for candidate in self.candidates}
        self.removed_before = dict(removed_before)
        self.by_queue: dict[int, list[Candidate]] = {}
        for candidate in self.candidates:
            for queue_id in candidate.queue_priority:
                self.by_queue.setdefault(queue_id, []).append(candidate)
        self.groups: dict[tuple, _Group] = {}
        self.member_of: dict[int, list[_Group]] = {}

    def _group(self, queue_id: int, needed: frozenset[str], strategy: str, max_priority: int) -> _Group:
        key = (queue_id, needed, strategy, max_priority)
        group = self.groups.get(key)
        if group is not None:
            return group
        pool = self.by_queue.get(queue_id, ())
        removed = dict.fromkeys(RULES, 0)
        removed.update(self.removed_before)
        removed["not_in_queue"] += len(self.candidates) - len(pool)
        group = self.groups[key] = _Group(strategy, removed)
        members = []
        for candidate in pool:
            if candidate.queue_priority[queue_id] > max_priority:
                removed["not_in_queue"] += 1
            elif not needed <= candidate.skills:
                removed["missing_skill"] += 1
            else:
                members.append(candidate)
                self.member_of.setdefault(candidate.agent_id, []).append(group)
        group.fill(members, self.now)
        return group

    def choose(self, *, queue_id: int, needed: frozenset[str], weight: int, strategy: str,
               max_priority: int, skip: frozenset[int] | tuple = (), channel: str = "") -> Choice:
        """The best agent for one case among the agents of its queue whose priority for the
        queue is at most `max_priority`, who have the skills needed and room for the case (its
        queue's `weight`, or the agent's own for `channel`), and who are not in `skip` (they
        declined the case or let its offer expire)."""
        group = self._group(queue_id, needed, strategy, max_priority)
        removed = dict(group.removed)
        own = group.own_weights
        removed["full"] = sum(count for spare, count in group.spares.items() if spare < weight)
        if own:  # recount the agents whose own weight differs from the queue's
            removed["full"] += sum((c.spare < c.weight(channel, weight)) - (c.spare < weight) for c in own)
        top: list[Candidate] = []
        by_id = self.by_id
        stops = strategy != ROUND_ROBIN and not own
        # Candidate.spare and Candidate.weight inlined: this loop runs for every case of a batch.
        for key in group.ranked:
            candidate = by_id[key[2]]
            own_weights = candidate.channel_weights
            if candidate.agent_id in skip:
                removed["declined"] += 1
            elif candidate.capacity - candidate.load >= (own_weights.get(channel, weight) if own_weights
                                                         else weight):
                top.append(candidate)
                if len(top) == TOP_CANDIDATES:
                    break
            elif stops:
                break  # ranked by spare units, one weight for all: nobody further on has room
        winner = top[0] if top else None
        return Choice(winner=winner, removed=removed,
                      top=[(c.agent_id, score(c, strategy, self.now)) for c in top],
                      weight=winner.weight(channel, weight) if winner else 0)

    def take(self, candidate: Candidate, weight: int) -> None:
        """The agent gets a case: less spare capacity, and last assigned now."""
        groups = self.member_of.get(candidate.agent_id, ())
        now = self.now
        # An agent is in a few groups of one or two strategies: each rank key is built once.
        keys: dict[str, tuple[float, float, int]] = {}
        for group in groups:
            key = keys.get(group.strategy)
            if key is None:
                key = keys[group.strategy] = rank_key(candidate, group.strategy, now)
            group.drop(candidate, key)
        candidate.load += weight
        candidate.idle_since = now
        keys.clear()
        for group in groups:
            key = keys.get(group.strategy)
            if key is None:
                key = keys[group.strategy] = rank_key(candidate, group.strategy, now)
            group.add(candidate, key)


def place_in_tiers(pools: Pools, pending: Iterable[tuple], tiers: Iterable[int]) -> dict[Any, Choice]:
    """Place cases in order: every case first among the agents who work its queue at priority 1,
    the ones still unplaced then among priority 1 and 2 agents, and so on. `pending` holds
    (key, queue id, skills needed, weight, strategy, agents to skip, channel) per case; each
    placed case takes its agent's capacity (`Choice.weight`) at once. Returns each case's latest
    choice by key (a winner when placed, else the choice of the last tier tried)."""
    choices: dict[Any, Choice] = {}
    pending = list(pending)
    for tier in tiers:
        still = []
        for item in pending:
            key, queue_id, needed, weight, strategy, skip, channel = item
            choice = choices[key] = pools.choose(queue_id=queue_id, needed=needed, weight=weight,
                                                 strategy=strategy, max_priority=tier, skip=skip,
                                                 channel=channel)
            if choice.winner is None:
                still.append(item)
            else:
                pools.take(choice.winner, choice.weight)
        pending = still
        if not pending:
            break
    return choices


def decision(*, choice: Choice | None, strategy: str, outcome: str, batch: str, at: datetime | str,
             note: str = "") -> dict[str, Any]:
    """The compact record stored on the case (`Case.routing_decision`); `at` may come formatted
    already (ISO 8601), as the engine stamps a whole batch at once."""
    doc: dict[str, Any] = {"outcome": outcome, "batch": batch,
                           "at": at if isinstance(at, str) else at.isoformat(), "strategy": strategy}
    if choice is not None:
        doc["removed"] = {k: v for k, v in choice.removed.items() if v}
        doc["top"] = [[agent_id, value] for agent_id, value in choice.top]
        held = choice.winner is not None and outcome in ("assigned", "offered")
        doc["winner"] = choice.winner.agent_id if held else None
    if note:
        doc["note"] = note
    return doc
