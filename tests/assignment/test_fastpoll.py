"""The workspace poll answered ahead of Django under ASGI: the same answers as Django's view (status,
ETag, cache and security headers, body), no Django request cycle, and everything it cannot
decide alone handed on to Django."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.core.asgi import get_asgi_application
from django.test import Client

from apps.assignment import realtime
from apps.assignment.api.fastpoll import POLL_PATH, PollFastPath
from tests.factories import AgentFactory

COMPARED = ("etag", "cache-control", "retry-after", "www-authenticate", "x-content-type-options",
            "x-frame-options", "referrer-policy", "content-type")


class Recorder:
    """The app behind the fast path: counts what reaches it, then lets Django answer."""

    def __init__(self) -> None:
        self.django = get_asgi_application()
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        await self.django(scope, receive, send)


@pytest.fixture(autouse=True)
def _fresh_scripts():
    realtime._client.cache_clear()
    realtime._scripts.cache_clear()


def asgi_get(app, headers: dict[str, str], method: str = "GET") -> httpx.Response:
    async def call():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
            return await client.request(method, POLL_PATH, headers=headers)

    # A loop of its own in a thread of its own: the browser tests' driver may hold a running loop
    # in this thread.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, call()).result()


def django_get(headers: dict[str, str]):
    return Client().get(POLL_PATH, headers=headers)


def same_answer(fast: httpx.Response, slow) -> None:
    assert fast.status_code == slow.status_code
    for name in COMPARED:
        assert fast.headers.get(name) == slow.headers.get(name), name
    assert (fast.json() if fast.content else None) == (slow.json() if slow.content else None)


@pytest.mark.django_db(transaction=True)
def test_the_fast_path_answers_like_django_without_reaching_it(settings):
    settings.WORKSPACE_POLL_RATE_PER_SECOND = 1000
    agent = AgentFactory(display_name="Ann <b>")
    state = realtime.agent_state_publish([agent.pk])[agent.pk]
    token = realtime.poll_token_mint(user_id=agent.user_id, agent_id=agent.pk)
    behind = Recorder()
    app = PollFastPath(behind)
    cases = [
        {"X-Poll-Token": token},
        {"X-Poll-Token": token, "If-None-Match": f'"{state["version"]}"'},
        {"X-Poll-Token": token, "If-None-Match": f'W/"{state["version"] - 1}"'},
        {},
        {"X-Poll-Token": "forged"},
        {"X-Poll-Token": "x" * 200},
    ]
    answers = [(asgi_get(app, headers), django_get(headers)) for headers in cases]
    for fast, slow in answers:
        same_answer(fast, slow)
    assert [fast.status_code for fast, _ in answers] == [200, 304, 200, 401, 401, 401]
    assert answers[0][0].json()["agent"]["name"] == "Ann <b>"
    assert asgi_get(app, {"X-Poll-Token": token}, method="HEAD").content == b""
    assert behind.calls == 0


@pytest.mark.django_db(transaction=True)
def test_over_the_rate_limit_both_paths_answer_429_alike(settings):
    settings.WORKSPACE_POLL_RATE_PER_SECOND = 0  # every poll is over the limit
    agent = AgentFactory()
    realtime.agent_state_publish([agent.pk])
    token = realtime.poll_token_mint(user_id=agent.user_id, agent_id=agent.pk)
    fast = asgi_get(PollFastPath(Recorder()), {"X-Poll-Token": token})
    same_answer(fast, django_get({"X-Poll-Token": token}))
    assert fast.status_code == 429 and fast.headers["Retry-After"] == "1"


@pytest.mark.django_db(transaction=True)
def test_what_needs_postgresql_or_another_tenant_goes_on_to_django():
    agent = AgentFactory()
    token = realtime.poll_token_mint(user_id=agent.user_id, agent_id=agent.pk)
    behind = Recorder()
    app = PollFastPath(behind)
    # No stored state (a flushed Redis): Django rebuilds it from PostgreSQL.
    realtime._client().delete(realtime.STATE.format(agent.pk))
    rebuilt = asgi_get(app, {"X-Poll-Token": token})
    assert rebuilt.status_code == 200 and rebuilt.json()["agent"]["id"] == agent.pk
    assert behind.calls == 1
    # A sandbox request: the production token means nothing there.
    assert asgi_get(app, {"X-Poll-Token": token, "baggage": "tenant=sandbox"}).status_code == 401
    assert behind.calls == 2
    # Other paths and methods are Django's.
    assert asgi_get(app, {"X-Poll-Token": token}, method="POST").status_code == 405
    assert behind.calls == 3
