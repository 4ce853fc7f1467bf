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

import orjson
import redis
from django.conf import settings

from apps.core.tenancy import tenant_key

LOAD = "assign:load"  # agent id -> units in use
IDLE = "assign:idle"  # agent id -> epoch seconds of their last assignment (round robin)
READY = "assign:ready"  # present once LOAD was rebuilt from PostgreSQL
DRIFT = "assign:drift"  # running totals of what the reconcile job corrected
KEYS = (LOAD, IDLE, READY)

# Up to this many values per Redis call from a script (Lua's unpack has a stack limit).
_CHUNK_LUA = """
local CHUNK = 4000
local function hmget(key, fields)
  local out = {}
  for i = 1, #fields, CHUNK do
    local values = redis.call('HMGET', key, unpack(fields, i, math.min(i + CHUNK - 1, #fields)))
    for j = 1, #values do out[#out + 1] = values[j] end
  end
  return out
end
local function hset(key, pairs)
  for i = 1, #pairs, CHUNK do
    redis.call('HSET', key, unpack(pairs, i, math.min(i + CHUNK - 1, #pairs)))
  end
end
"""
# Every (agent, units, capacity) in order, as "agent:units:capacity" items joined by commas in
# ARGV[2] (one argument, not three per item, to encode): accepted while the agent's load plus
# units fits the capacity; an agent given several cases is checked against the running total.
# Each agent's load is read once and written once (three Redis calls for a whole batch, not
# three per item; the agents of one batch are a few hundred, so HMGET's scan of a small hash
# costs no more than one HGET each did). The answer is one string, a "1" (accepted) or "0" per
# item (one reply to parse, not one per item); "-" when the counters are not rebuilt yet.
_RESERVE = _CHUNK_LUA + """
if redis.call('EXISTS', KEYS[3]) == 0 then return '-' end
local agents, load = {}, {}
for agent in string.gmatch(ARGV[2], '(%d+):%d+:%d+') do
  if load[agent] == nil then load[agent] = 0; agents[#agents + 1] = agent end
end
local values = hmget(KEYS[1], agents)
for i, agent in ipairs(agents) do load[agent] = tonumber(values[i] or '0') end
local out, taken = {}, {}
for agent, units, capacity in string.gmatch(ARGV[2], '(%d+):(%d+):(%d+)') do
  local total = load[agent] + tonumber(units)
  if total <= tonumber(capacity) then
    load[agent] = total
    taken[agent] = true
    out[#out + 1] = '1'
  else
    out[#out + 1] = '0'
  end
end
local loads, idle = {}, {}
for agent in pairs(taken) do
  loads[#loads + 1] = agent; loads[#loads + 1] = load[agent]
  idle[#idle + 1] = agent; idle[#idle + 1] = ARGV[1]
end
hset(KEYS[1], loads)
hset(KEYS[2], idle)
return table.concat(out)
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
# The loads and last-assignment times of the agents in ARGV[1] (ids joined by commas), with the
# ready flag, as one JSON document: one value to parse instead of two replies per agent. Each
# hash is read whole and indexed once: HMGET of many fields on a small (listpack-encoded) hash
# scans it once per field (2,000 fields on a hash of 500 agents: 9 ms instead of 1).
_READ = """
local function pick(key, ids)
  local all, by_id, out = redis.call('HGETALL', key), {}, {}
  for i = 1, #all, 2 do by_id[all[i]] = all[i + 1] end
  for i, id in ipairs(ids) do out[i] = by_id[id] or false end
  return out
end
local ids = {}
for id in string.gmatch(ARGV[1], '%d+') do ids[#ids + 1] = id end
return cjson.encode({redis.call('EXISTS', KEYS[3]), pick(KEYS[1], ids), pick(KEYS[2], ids)})
"""
# Before replacing the loads, the rebuild measures how far they had drifted from PostgreSQL's
# (agents and units) and adds it to running totals: the reconcile job's findings, for metrics.
# Counters that were not ready (a flushed Redis) have no drift to measure; that is counted apart.
_REBUILD = """
local agents, units = 0, 0
if redis.call('EXISTS', KEYS[2]) == 1 then
  local was, flat = {}, redis.call('HGETALL', KEYS[1])
  for i = 1, #flat, 2 do was[flat[i]] = tonumber(flat[i + 1]) end
  for i = 1, #ARGV, 2 do
    local diff = math.abs((was[ARGV[i]] or 0) - tonumber(ARGV[i + 1]))
    if diff > 0 then agents = agents + 1; units = units + diff end
    was[ARGV[i]] = nil
  end
  for _, load in pairs(was) do
    if load ~= 0 then agents = agents + 1; units = units + math.abs(load) end
  end
  redis.call('HINCRBY', KEYS[3], 'runs', 1)
  redis.call('HINCRBY', KEYS[3], 'agents', agents)
  redis.call('HINCRBY', KEYS[3], 'units', units)
else
  redis.call('HINCRBY', KEYS[3], 'rebuilt_from_empty', 1)
end
redis.call('DEL', KEYS[1])
for i = 1, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
redis.call('SET', KEYS[2], '1')
return {agents, units}
"""


@cache
def _client() -> redis.Redis:
    # redis-py's pool notices a fork (prefork workers) and reconnects in the child.
    return redis.Redis.from_url(settings.REDIS_COUNTERS_URL)


@cache
def _scripts():
    client = _client()
    return {name: client.register_script(src) for name, src in
            (("read", _READ), ("reserve", _RESERVE), ("release", _RELEASE), ("set", _SET),
             ("rebuild", _REBUILD))}


def _keys(*names: str) -> list[str]:
    # The sandbox tenant's agents are numbered apart from production's: its counters are too.
    return [tenant_key(name) for name in names]


def _flat(pairs: Iterable[tuple]) -> list:
    return [value for pair in pairs for value in pair]


def counters_read(agent_ids: Sequence[int]) -> tuple[bool, dict[int, int], dict[int, float]]:
    """(ready, load by agent, last assignment time by agent) in one round trip."""
    doc = orjson.loads(_scripts()["read"](keys=_keys(*KEYS), args=[",".join(map(str, agent_ids))]))
    ready, loads, idle = doc[0], doc[1] or [], doc[2] or []  # cjson writes an empty list as {}
    return (bool(ready), {a: int(v) for a, v in zip(agent_ids, loads, strict=True) if v},
            {a: float(v) for a, v in zip(agent_ids, idle, strict=True) if v})


def counters_reserve(items: Sequence[tuple[int, int, int]]) -> list[bool] | None:
    """Reserve (agent, units, capacity) for each item atomically; None if not rebuilt yet."""
    if not items:
        return []
    packed = ",".join(f"{agent}:{units}:{capacity}" for agent, units, capacity in items)
    flags = _scripts()["reserve"](keys=_keys(*KEYS), args=[time.time(), packed])
    if flags == b"-":
        return None
    return [flag == 49 for flag in flags]  # b"1"[0]


def counters_release(items: Iterable[tuple[int, int]]) -> None:
    args = _flat(items)
    if args:
        _scripts()["release"](keys=_keys(LOAD), args=args)


def counters_set(loads: Mapping[int, int]) -> bool:
    """Set absolute loads (never an increment); False when the counters await a rebuild."""
    if not loads:
        return True
    return bool(_scripts()["set"](keys=_keys(LOAD, READY), args=_flat(loads.items())))


def counters_rebuild(loads: Mapping[int, int]) -> tuple[int, int]:
    """Replace every load at once and mark the counters ready; returns the drift it corrected
    (agents whose load was wrong, units wrong in all), (0, 0) after a flush."""
    agents, units = _scripts()["rebuild"](keys=_keys(LOAD, READY, DRIFT), args=_flat(loads.items()))
    return int(agents), int(units)


def reconcile_totals() -> dict[str, int]:
    """Running totals of the reconcile job since Redis last lost its data: runs, agents and
    units of drift found, and rebuilds of counters found missing."""
    totals = {k.decode(): int(v) for k, v in _client().hgetall(tenant_key(DRIFT)).items()}
    return {name: totals.get(name, 0) for name in ("runs", "agents", "units", "rebuilt_from_empty")}


def counters_loads() -> dict[int, int]:
    """Every stored load (tests and the reconcile report)."""
    return {int(k): int(v) for k, v in _client().hgetall(tenant_key(LOAD)).items()}


def flag_clear(key: str) -> None:
    try:
        _client().delete(tenant_key(key))
    except redis.RedisError:
        pass


def flag_set_once(key: str, ttl_ms: int) -> bool:
    """True when this call raised the flag (it was down); False while it is up, or when Redis
    cannot be reached (callers treat the flag as an optimisation, never as a lock)."""
    try:
        return bool(_client().set(tenant_key(key), "1", nx=True, px=ttl_ms))
    except redis.RedisError:
        return False
