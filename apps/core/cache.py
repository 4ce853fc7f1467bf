"""The Redis cache backend with one connection pool per process.

Django keeps its cache objects per thread and, under ASGI, per request context, and its Redis client
opens a connection pool per cache object without ever closing it. Under the ASGI server that was a
new pool, and a new Redis connection, for every request, left for the garbage collector to close:
under load Redis ran out of client slots ("max number of clients reached") before it did. The
client (its pools and serializer) is thread-safe, and redis-py's pool reconnects in a forked child,
so one client per location and options serves the whole process.
"""

from __future__ import annotations

import threading

from django.core.cache.backends.redis import RedisCache
from django.utils.functional import cached_property

_clients: dict[str, object] = {}
_lock = threading.Lock()


class SharedPoolRedisCache(RedisCache):
    @cached_property
    def _cache(self):
        key = repr((self._servers, sorted(self._options.items())))
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = _clients[key] = self._class(self._servers, **self._options)
        return client
