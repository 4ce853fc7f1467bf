"""The ASGI server's heap and its Redis cache connections: a request leaves no cycle through
Django's handler, a client that leaves before the answer still cancels the view, start-up is
settled once at lifespan start, request garbage is freed between requests, and the cache shares one
connection pool per process instead of opening one per request."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import types
import weakref
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from django.conf import settings
from django.core.cache import caches
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler

from config import heap
from tests.factories.merchants import hub_case, hub_member, hub_token


def run_in_own_loop(coro):
    # A thread of its own: the browser tests' driver may hold a running loop in this thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result(timeout=60)


async def get_many(path: str, headers: dict[str, str], times: int) -> list[int]:
    from config.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        return [(await client.get(path, headers=headers)).status_code for _ in range(times)]


@pytest.fixture
def hub_headers(db):
    member = hub_member()
    hub_case(member)
    return {"Authorization": f"Token {hub_token(member)}"}


@pytest.fixture
def collector_paused():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.django_db(transaction=True)
def test_a_request_leaves_no_cycle_through_djangos_handler(hub_headers, collector_paused):
    run_in_own_loop(get_many("/api/v1/hub/cases/", hub_headers, 1))  # imports and caches warm
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    assert run_in_own_loop(get_many("/api/v1/hub/cases/", hub_headers, 5)) == [200] * 5
    gc.collect()
    handler_code = (ASGIHandler.handle.__code__, ASGIHandler.listen_for_disconnect.__code__)
    handler_frames = [o for o in gc.garbage if isinstance(o, types.FrameType) and o.f_code in handler_code]
    aborted = [o for o in gc.garbage if isinstance(o, RequestAborted)]
    assert not handler_frames and not aborted


def test_a_client_gone_before_the_answer_still_cancels_the_view(db):
    """What the handler's listener relies on (Django 5.2): a listener that returns cancels the view
    still running, as one that raised did. Django 6.1 changes this; the test then fails."""
    sent = []

    async def receive():
        if not sent and not hasattr(receive, "body_read"):
            receive.body_read = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message["type"])

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/api/v1/hub/cases/", "raw_path": b"/api/v1/hub/cases/",
             "query_string": b"", "root_path": "", "headers": [(b"host", b"localhost")],
             "client": ("127.0.0.1", 5000), "server": ("localhost", 80)}
    run_in_own_loop(heap.ASGIRequestHandler()(scope, receive, send))
    assert sent == []


def test_lifespan_start_up_settles_the_heap_once():
    before = gc.get_threshold()
    messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
    sent = []

    async def receive():
        return next(messages)

    async def send(message):
        sent.append(message["type"])

    async def app(scope, receive, send):
        raise AssertionError("lifespan never reaches the application")

    try:
        run_in_own_loop(heap.ServerHeap(app)({"type": "lifespan"}, receive, send))
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert gc.get_freeze_count() > 10_000  # Django, DRF and the apps' modules, all imported
        assert gc.get_threshold()[0] == heap.YOUNG_GENERATION_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


class Node:
    def __init__(self) -> None:
        self.me = self


def test_garbage_of_finished_requests_is_freed_between_requests(collector_paused):
    left = []  # a weak reference to a cycle each request left behind
    gate = asyncio.Event()

    async def app(scope, receive, send):
        if scope["path"] == "/slow":
            await gate.wait()
        nodes = [Node() for _ in range(heap.IDLE_COLLECTION_MIN)]
        left.append(weakref.ref(nodes[0]))

    async def overlapping():
        middleware = heap.ServerHeap(app)
        slow = asyncio.create_task(middleware({"type": "http", "path": "/slow"}, None, None))
        await asyncio.sleep(0)
        await middleware({"type": "http", "path": "/fast"}, None, None)
        alive_while_busy = left[0]() is not None  # a request still in flight: no pass yet
        gate.set()
        await slow
        return alive_while_busy

    assert run_in_own_loop(overlapping()) is True
    assert [ref() for ref in left] == [None, None]  # the last request out ran the pass


def test_every_context_shares_one_cache_client():
    # An empty context, as each ASGI request has: Django makes a cache object for each.
    clients = {id(contextvars.Context().run(lambda: caches["default"]._cache)) for _ in range(3)}
    assert len(clients) == 1


@pytest.mark.django_db(transaction=True)
def test_requests_under_asgi_reuse_the_cache_connection(hub_headers):
    server = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    run_in_own_loop(get_many("/api/v1/hub/cases/", hub_headers, 1))
    opened = server.info("stats")["total_connections_received"]
    assert run_in_own_loop(get_many("/api/v1/hub/cases/", hub_headers, 30)) == [200] * 30
    # One request per connection would be 30 (Django's own backend under ASGI).
    assert server.info("stats")["total_connections_received"] - opened <= 3
    server.close()
