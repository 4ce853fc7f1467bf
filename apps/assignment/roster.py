"""What the engine keeps of agents between batches: skills, capacity, queue links and own channel
weights, parsed once per roster version instead of read and parsed on every batch.

Each worker process keeps the roster of the versions it saw last (one per tenant; a version is
random, so it names one database, schema and state). A batch reads the version with the routable
agents in one snapshot (apps.assignment.selectors.agents_routable); while it matches, the copy
is current, because every statement that changes those columns or links changes the version in
its own transaction (triggers of migration assignment 0013). Presence, heartbeats and loads are
not kept: they are read on every batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from apps.assignment.selectors import agent_roster

# Production and the sandbox each have a version of their own; a few more spare a reload when
# a worker alternates between them.
_KEEP = 4
_copies: dict[str, dict[int, RosterAgent]] = {}


@dataclass(frozen=True, slots=True)
class RosterAgent:
    skills: frozenset[str]
    capacity: int
    queue_priority: Mapping[int, int]  # queue id -> the agent's priority for it (1 first)
    channel_weights: Mapping[str, int]  # the agent's own weights by channel, usually empty


def roster_at(version: str | None) -> dict[int, RosterAgent]:
    """Every agent by id, as of `version` or later; read from PostgreSQL when this process has
    no copy of that version (and never kept without a version)."""
    roster = _copies.get(version) if version is not None else None
    if roster is not None:
        return roster
    loaded, rows = agent_roster()
    roster = _parse(rows)
    if loaded is not None:
        if len(_copies) >= _KEEP:
            _copies.pop(next(iter(_copies)))
        _copies[loaded] = roster
    return roster


def _parse(rows: list[tuple]) -> dict[int, RosterAgent]:
    # Agents share a handful of skill sets and queue link sets: each is parsed once and shared
    # (never changed while kept).
    skill_sets: dict[str, frozenset[str]] = {}
    link_sets: dict[str | None, dict[int, int]] = {}
    no_weights: Mapping[str, int] = {}
    roster = {}
    for pk, skills, capacity, links, channel_weights in rows:
        skill_set = skill_sets.get(skills)
        if skill_set is None:
            skill_set = skill_sets[skills] = frozenset(skills.split(",")) - {""}
        queue_priority = link_sets.get(links)
        if queue_priority is None:
            queue_priority = link_sets[links] = {
                int(queue_id): int(priority)
                for queue_id, priority in (link.split(":") for link in (links.split(",") if links else ()))}
        roster[pk] = RosterAgent(skills=skill_set, capacity=capacity, queue_priority=queue_priority,
                                 channel_weights=channel_weights or no_weights)
    return roster
