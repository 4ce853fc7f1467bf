"""How a long-lived ASGI server process keeps Python's cyclic garbage collector out of its latency.

Under steady load (bench/support_hub.py) requests stalled for 100-300 ms every few seconds: full
collections walking the ~150,000 objects Django, DRF and the apps create at start-up, and ever
more garbage promoted into the older generations. Every request leaves reference cycles (Django's
request and its message storage point at each other, DRF's request and its view too, and Django's
ASGI handler made one more, see below), so its objects are freed by the collector, not by
reference counting. Here the server settles its start-up heap once, and frees each burst of request
garbage in a young pass while no request is waiting.
"""

from __future__ import annotations

import gc

from django.core.handlers.asgi import ASGIHandler

# Python runs a young pass every 700 net allocations: many times within one request, so what the
# requests in flight still use survives it, is promoted, dies there and waits for the older, far
# costlier passes. Between requests (ServerHeap) nothing a request made is alive; this threshold is
# only the backstop for a server that is never idle.
YOUNG_GENERATION_THRESHOLD = 50_000
# Garbage worth a pass between requests: about what two requests leave.
IDLE_COLLECTION_MIN = 1_000


class ASGIRequestHandler(ASGIHandler):
    """Django's ASGI handler without its per-request reference cycle (Django ticket #36700).

    Django 5.2's `handle()` runs the view and a disconnect listener as two tasks and, once one of
    them is done, treats a listener that raised `RequestAborted` exactly like one that returned:
    either way the view's task is cancelled if it is still running. uvicorn answers the listener's
    `receive()` with `http.disconnect` as soon as the response is complete, so the listener raised on
    every request; the exception's traceback held `handle()`'s frame, whose task list held the
    exception again, and that cycle kept the request, its querysets and its response alive until a
    collection found them. Returning instead of raising keeps the behaviour and drops the cycle.
    Django 6.1 rewrites `handle()` (there only a raising listener cancels the view):
    tests/core/test_heap.py pins the behaviour this relies on.
    """

    async def listen_for_disconnect(self, receive):
        message = await receive()
        if message["type"] != "http.disconnect":
            # What Django's own listener does with a message the protocol does not allow here.
            raise AssertionError(f"Invalid ASGI message after request body: {message['type']}")


class ServerHeap:
    """ASGI middleware for the server process's heap. At lifespan start-up (uvicorn --lifespan on)
    it settles what start-up made; once the last HTTP request in flight has been answered it runs a
    young pass, which frees what the requests left while no request waits for the process."""

    def __init__(self, app) -> None:
        self.app = app
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.in_flight += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if not self.in_flight and gc.get_count()[0] >= IDLE_COLLECTION_MIN:
                gc.collect(0)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                settle()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def settle() -> None:
    """Once the server has loaded everything it keeps: import what the first request would
    (URLconf, views, serializers), collect what start-up left behind, and move the rest into the
    permanent generation so that no later collection walks it again."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - importing every view module is the point
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)
