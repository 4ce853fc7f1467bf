"""The agent workspace's live state: one small JSON document per agent in Redis (pending offers,
active cases, presence) with a version, rebuilt from PostgreSQL after every commit that changes
it and pushed to every open tab through the channel layer; the short-poll fallback reads it
(with a per-tab token and a per-agent rate limit) in one Redis call, never touching PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
import weakref
from collections.abc import Iterable
from functools import cache
from typing import Any

import redis
import redis.asyncio
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef

from apps.assignment.models import Agent, Offer, OfferState
from apps.cases.models import OPEN_STATUSES, Case
from apps.core.tenancy import tenant_key

STATE = "ws:state:{}"  # agent id -> hash of the state document (`body`) and its `version`
TOKEN = "ws:token:{}"  # poll token -> "user id:agent id"
RATE = "ws:rate:{}:{}"  # agent id, epoch second -> polls in that second (all tabs together)
# A polling tab opens a screen pop this recent (the call was answered moments ago); an older one
# would open a stale case in a tab opened later.
SCREEN_POP_FRESH_SECONDS = 60


def agent_group(agent_id: int) -> str:
    # Sandbox agents are numbered apart from production's: their groups (and keys) are apart too.
    return tenant_key(f"agent.{agent_id}", sep=".")


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_COUNTERS_URL)


# A hash per agent: `body` (the document without its version, keys sorted) and `version`, bumped
# only when the body changed, so a republish that changed nothing costs no tab a 200.
# Returns {changed, version}.
_STORE = """
if redis.call('HGET', KEYS[1], 'body') == ARGV[1] then
  return {0, tonumber(redis.call('HGET', KEYS[1], 'version'))}
end
local version = redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'body', ARGV[1])
return {1, version}
"""

# The poll, in one round trip: the token names the agent (else {-1}); the agent's polls in this
# second are counted (over the limit: {-2}); an unchanged version answers {0}; else
# {1, agent, version, body}, or {2} when the document is missing (a flushed Redis: the caller rebuilds it).
# KEYS: token key. ARGV: epoch second, limit, If-None-Match version, the tenant's key prefix.
_POLL = """
local who = redis.call('GET', KEYS[1])
if not who then return {-1} end
local agent = string.match(who, ':(%d+)$')
local rate = ARGV[4] .. 'ws:rate:' .. agent .. ':' .. ARGV[1]
local n = redis.call('INCR', rate)
if n == 1 then redis.call('EXPIRE', rate, 2) end
if n > tonumber(ARGV[2]) then return {-2, agent} end
local state = redis.call('HMGET', ARGV[4] .. 'ws:state:' .. agent, 'version', 'body', 'pop')
if not state[2] then return {2, agent} end
if state[1] == ARGV[3] then return {0, agent} end
return {1, agent, state[1], state[2], state[3]}
"""

# A screen pop for tabs that poll: kept beside the body (so a republish neither drops nor repeats
# it) under a new version, which their next poll fetches. {0} when there is no state yet.
_POP = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'pop', ARGV[1])
return redis.call('HINCRBY', KEYS[1], 'version', 1)
"""


@cache
def _scripts():
    client = _client()
    return {"store": client.register_script(_STORE), "poll": client.register_script(_POLL),
            "pop": client.register_script(_POP)}


def _documents(agent_ids: set[int]) -> dict[int, dict[str, Any]]:
    """The state of each agent from PostgreSQL: three queries whatever the count."""
    docs = {pk: {"agent": {"id": pk, "name": name, "presence": presence}, "offers": [], "cases": []}
            for pk, name, presence in Agent.objects.filter(pk__in=agent_ids)
            .values_list("pk", "display_name", "presence")}
    offers = (Offer.objects.filter(agent_id__in=docs, state=OfferState.PENDING)
              .order_by("expires_at", "id")
              .values_list("id", "agent_id", "case_id", "case__subject", "case__queue__slug",
                           "case__priority", "case__channel", "expires_at"))
    for pk, agent_id, case_id, subject, queue, priority, channel, expires_at in offers:
        docs[agent_id]["offers"].append({"id": pk, "case": str(case_id), "subject": subject, "queue": queue,
                                         "priority": priority, "channel": channel,
                                         "expires_at": expires_at.isoformat()})
    # An offered case is held by the agent already; it shows as an offer until accepted.
    offered = Offer.objects.filter(case_id=OuterRef("pk"), agent_id=OuterRef("assigned_agent_id"),
                                   state=OfferState.PENDING)
    cases = (Case.objects.filter(assigned_agent_id__in=docs, status__in=OPEN_STATUSES)
             .exclude(Exists(offered)).order_by("-priority", "created_at")
             .values_list("id", "assigned_agent_id", "subject", "queue__slug", "status", "priority",
                          "channel"))
    for pk, agent_id, subject, queue, status, priority, channel in cases:
        docs[agent_id]["cases"].append({"id": str(pk), "subject": subject, "queue": queue, "status": status,
                                        "priority": priority, "channel": channel})
    return docs


def _send_all(pushes: list[tuple[int, dict]]) -> None:
    """Push to many agents' groups from one event loop (one set of channel-layer connections), in
    one pipeline: a batch that offered to hundreds of agents costs one fan-out, not hundreds."""
    layer = get_channel_layer()
    if layer is None or not pushes:
        return
    # The project's layer (apps.core.channel_layer, set in settings).
    send = async_to_sync(layer.group_send_many)
    # Group names are the current tenant's: named here, since the helper thread below starts
    # without this context.
    pushes = [(agent_group(agent_id), message) for agent_id, message in pushes]
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        send(pushes)
        return
    # Synchronous code running in an event loop's thread (a sync caller under a running loop)
    # cannot block on the loop: the send goes from a helper thread instead.
    helper = threading.Thread(target=send, args=(pushes,))
    helper.start()
    helper.join()


def _send(agent_id: int, message: dict) -> None:
    _send_all([(agent_id, message)])


def agent_state_publish(agent_ids: Iterable[int]) -> dict[int, dict]:
    """Rebuild the named agents' states from PostgreSQL, store the changed ones under a new
    version and push them to the agents' open tabs. Returns every state by agent id.

    Best effort by design: PostgreSQL stays the truth, and a tab that missed a push catches up
    on its next connect or poll; so Redis or channel-layer trouble never fails the caller."""
    ids = {int(pk) for pk in agent_ids if pk is not None}
    if not ids:
        return {}
    docs = _documents(ids)
    store = _scripts()["store"]
    try:
        # Every agent's store script in one round trip.
        pipe = _client().pipeline(transaction=False)
        for agent_id, doc in docs.items():
            store(keys=[tenant_key(STATE.format(agent_id))], args=[json.dumps(doc, sort_keys=True)],
                  client=pipe)
        replies = pipe.execute(raise_on_error=False)
    except (redis.RedisError, OSError):
        return {}
    states, pushes = {}, []
    for (agent_id, doc), reply in zip(docs.items(), replies, strict=True):
        if isinstance(reply, Exception):
            continue
        changed, version = reply
        states[agent_id] = state = {**doc, "version": int(version)}
        if changed:
            pushes.append((agent_id, {"type": "state.push", "state": state}))
    try:
        _send_all(pushes)
    except (redis.RedisError, OSError):
        pass
    return states


def agent_state_publish_on_commit(agent_ids: Iterable[int]) -> None:
    """Publish once the current transaction commits (at once outside one): a tab must never be
    told of an offer another transaction cannot see yet."""
    ids = {pk for pk in agent_ids if pk is not None}
    if ids:
        transaction.on_commit(lambda: agent_state_publish(ids))


def agent_state(agent_id: int) -> dict:
    """The agent's current state: from Redis, rebuilt from PostgreSQL when missing."""
    version, body = _client().hmget(tenant_key(STATE.format(agent_id)), "version", "body")
    if body is not None:
        return {**json.loads(body), "version": int(version)}
    return agent_state_publish([agent_id]).get(agent_id, {})


def agent_screen_pop(agent_id: int, case: dict) -> None:
    """Open a case in every tab of the agent at once (an answered phone call): pushed to open
    sockets, and left in the state for tabs that poll (for SCREEN_POP_FRESH_SECONDS)."""
    pop = json.dumps({**case, "at": time.time()})
    try:
        key = tenant_key(STATE.format(agent_id))
        if not _scripts()["pop"](keys=[key], args=[pop]):
            agent_state_publish([agent_id])
            _scripts()["pop"](keys=[key], args=[pop])
        _send(agent_id, {"type": "screen.pop", "case": case})
    except (redis.RedisError, OSError):
        pass


def poll_token_mint(*, user_id: int, agent_id: int) -> str:
    """A token for one workspace tab's polls: the poll never reads the session (PostgreSQL)."""
    token = secrets.token_urlsafe(24)
    _client().set(tenant_key(TOKEN.format(token)), f"{user_id}:{agent_id}",
                  ex=settings.WORKSPACE_POLL_TOKEN_TTL_SECONDS)
    return token


def poll_token_revoke(token: str) -> None:
    _client().delete(tenant_key(TOKEN.format(token)))


def _poll_call(token: str, known_version: str) -> tuple[list, list] | None:
    """The poll script's keys and arguments; None for a token that cannot be one."""
    if not token or len(token) > 100:
        return None
    version = known_version if known_version.isdigit() else ""
    return ([tenant_key(TOKEN.format(token))],
            [int(time.time()), settings.WORKSPACE_POLL_RATE_PER_SECOND, version, tenant_key("")])


def _poll_outcome(reply: list) -> tuple[str, int | None, dict | None]:
    code = int(reply[0])
    agent_id = int(reply[1]) if len(reply) > 1 else None
    if code == -1:
        return "unauthorized", None, None
    if code == -2:
        return "limited", agent_id, None
    if code == 0:
        return "not_modified", agent_id, None
    if code == 2:
        return "missing", agent_id, None
    state = {**json.loads(reply[3]), "version": int(reply[2])}
    pop = json.loads(reply[4]) if len(reply) > 4 and reply[4] else None
    if pop is not None and pop.get("at", 0) >= time.time() - SCREEN_POP_FRESH_SECONDS:
        state["screen_pop"] = pop
    return "state", agent_id, state


def state_poll(*, token: str, known_version: str) -> tuple[str, int | None, dict | None]:
    """One poll: ("unauthorized" | "limited" | "not_modified" | "state", agent id, state)."""
    call = _poll_call(token, known_version)
    if call is None:
        return "unauthorized", None, None
    keys, args = call
    outcome, agent_id, state = _poll_outcome(_scripts()["poll"](keys=keys, args=args))
    if outcome == "missing":
        return "state", agent_id, agent_state_publish([agent_id]).get(agent_id, {})
    return outcome, agent_id, state


_async_scripts: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


async def state_poll_async(*, token: str, known_version: str) -> tuple[str, int | None, dict | None]:
    """state_poll for an event loop, without PostgreSQL: "missing" when the state must first be
    rebuilt from the database (the caller hands the poll to state_poll)."""
    call = _poll_call(token, known_version)
    if call is None:
        return "unauthorized", None, None
    loop = asyncio.get_running_loop()
    script = _async_scripts.get(loop)
    if script is None:  # a client per event loop: its connections belong to that loop
        client = redis.asyncio.Redis.from_url(settings.REDIS_COUNTERS_URL)
        script = _async_scripts[loop] = client.register_script(_POLL)
    keys, args = call
    return _poll_outcome(await script(keys=keys, args=args))
