"""Per-check leases in Redis: `SET key token NX PX ttl`, so across every worker exactly one
runner executes a given check at a time. Confirm and release compare the token (Lua), so a
runner whose lease expired can never extend or free another runner's lease.
"""

from __future__ import annotations

import threading
import uuid

import redis
from django.conf import settings

from apps.core.tenancy import tenant_key

PREFIX = "casehub:health:lease:"
_CONFIRM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2]); return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}


def client() -> redis.Redis:
    url = settings.REDIS_COUNTERS_URL
    with _lock:
        if url not in _clients:
            _clients[url] = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
        return _clients[url]


def key(check_id: int) -> str:
    # Namespaced by database: two stacks (dev, tests, a benchmark) sharing one Redis never collide.
    # The sandbox tenant numbers its checks apart from production: its leases are apart too.
    return tenant_key(f"{PREFIX}{settings.DATABASES['default']['NAME']}:{check_id}")


def leases_acquire(ttl_ms: dict[int, int]) -> dict[int, str]:
    """Try to lease each check (one round trip); returns {check_id: token} of the leases won."""
    tokens = {check_id: uuid.uuid4().hex for check_id in ttl_ms}
    pipe = client().pipeline(transaction=False)
    for check_id, ttl in ttl_ms.items():
        pipe.set(key(check_id), tokens[check_id], nx=True, px=max(1, int(ttl)))
    won = pipe.execute()
    return {check_id: tokens[check_id] for check_id, ok in zip(ttl_ms, won, strict=True) if ok}


def _scripted(script: str, tokens: dict[int, str], *extra) -> dict[int, bool]:
    if not tokens:
        return {}
    runner = client().register_script(script)
    pipe = client().pipeline(transaction=False)
    for check_id, token in tokens.items():
        runner(keys=[key(check_id)], args=[token, *extra], client=pipe)
    return {check_id: bool(ok) for check_id, ok in zip(tokens, pipe.execute(), strict=True)}


def leases_confirm(tokens: dict[int, str], *, ttl_ms: int) -> dict[int, bool]:
    """Which leases are still ours; those are extended by `ttl_ms` to cover writing the results."""
    return _scripted(_CONFIRM, tokens, int(ttl_ms))


def leases_release(tokens: dict[int, str]) -> dict[int, bool]:
    return _scripted(_RELEASE, tokens)
