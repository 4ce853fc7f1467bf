"""Agents' weighted loads in Redis: read once per batch, reserved atomically with the assignment
(one Lua call per batch), set to absolute values from PostgreSQL, rebuilt whole by reconcile.

Redis is a fast, rebuildable copy: PostgreSQL (SUM of assigned_weight over an agent's open
cases, guarded by a trigger) is the truth. While the `ready` key is missing (a flushed or new
Redis) nothing is reserved: the engine rebuilds first, so an empty hash never reads as
"everyone is free".
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from functools import cache

import redis
from django.conf import settings

LOAD = "assign:load"  # agent id -> units in use
IDLE = "assign:idle"  # agent id -> epoch seconds of their last assignment (round robin)
READY = "assign:ready"  # present once LOAD was rebuilt from PostgreSQL
KEYS = (LOAD, IDLE, READY)

# Every (agent, units, capacity) in order: accepted while the agent's load plus units fits the
# capacity; an agent given several cases is checked against the running total. {-1} when the
# counters are not rebuilt yet.
_RESERVE = """
if redis.call('EXISTS', KEYS[3]) == 0 then return {-1} end
local out = {}
for i = 2, #ARGV, 3 do
  local agent, units, capacity = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  local load = tonumber(redis.call('HGET', KEYS[1], agent) or '0')
  if load + units <= capacity then
    redis.call('HINCRBY', KEYS[1], agent, units)
    redis.call('HSET', KEYS[2], agent, ARGV[1])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""
# Give back units reserved for assignments that were not written; never below zero.
_RELEASE = """
for i = 1, #ARGV, 2 do
  local left = tonumber(redis.call('HINCRBY', KEYS[1], ARGV[i], -tonumber(ARGV[i + 1])))
  if left < 0 then redis.call('HSET', KEYS[1], ARGV[i], 0) end
end
return 1
"""
# Absolute loads of some agents, only once the counters exist (else reconcile builds them all).
_SET = """
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""
_REBUILD = """
redis.call('DEL', KEYS[1])
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[2], '1')
return 1
"""


@cache
def _client() -> redis.Redis:
    # redis-py's pool notices a fork (prefork workers) and reconnects in the child.
    return redis.Redis.from_url(settings.REDIS_COUNTERS_URL)


@cache
def _scripts():
    client = _client()
    return {name: client.register_script(src) for name, src in
            (("reserve", _RESERVE), ("release", _RELEASE), ("set", _SET), ("rebuild", _REBUILD))}


def _flat(pairs: Iterable[tuple]) -> list:
    return [value for pair in pairs for value in pair]


def counters_read(agent_ids: Sequence[int]) -> tuple[bool, dict[int, int], dict[int, float]]:
    """(ready, load by agent, last assignment time by agent) in one round trip."""
    pipe = _client().pipeline(transaction=False)
    pipe.exists(READY)
    if agent_ids:
        pipe.hmget(LOAD, list(agent_ids))
        pipe.hmget(IDLE, list(agent_ids))
    results = pipe.execute()
    if not agent_ids:
        return bool(results[0]), {}, {}
    loads = {a: int(v) for a, v in zip(agent_ids, results[1], strict=True) if v is not None}
    idle = {a: float(v) for a, v in zip(agent_ids, results[2], strict=True) if v is not None}
    return bool(results[0]), loads, idle


def counters_reserve(items: Sequence[tuple[int, int, int]]) -> list[bool] | None:
    """Reserve (agent, units, capacity) for each item atomically; None if not rebuilt yet."""
    if not items:
        return []
    flags = _scripts()["reserve"](keys=KEYS, args=[time.time(), *_flat(items)])
    if flags and flags[0] == -1:
        return None
    return [flag == 1 for flag in flags]


def counters_release(items: Iterable[tuple[int, int]]) -> None:
    args = _flat(items)
    if args:
        _scripts()["release"](keys=[LOAD], args=args)


def counters_set(loads: Mapping[int, int]) -> bool:
    """Set absolute loads (never an increment); False when the counters await a rebuild."""
    if not loads:
        return True
    return bool(_scripts()["set"](keys=[LOAD, READY], args=_flat(loads.items())))


def counters_rebuild(loads: Mapping[int, int]) -> None:
    """Replace every load at once and mark the counters ready."""
    _scripts()["rebuild"](keys=[LOAD, READY], args=_flat(loads.items()))


def counters_loads() -> dict[int, int]:
    """Every stored load (tests and the reconcile report)."""
    return {int(k): int(v) for k, v in _client().hgetall(LOAD).items()}
