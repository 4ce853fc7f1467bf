"""The workspace poll answered ahead of Django (config/asgi.py wraps the HTTP app with it).

Every open workspace tab without a websocket polls about once a second, and nearly every poll is
a 304: one Redis call decides it, so the Django request cycle (middleware, URL resolution, DRF)
would be most of its cost. What this path cannot answer alone goes on to Django's view
(apps.assignment.api.views.AgentStateView, which also documents the endpoint): a request naming a
tenant in its baggage, a state missing from Redis (rebuilt from PostgreSQL there), Redis trouble.
"""

from __future__ import annotations

import json

import redis
from django.conf import settings

from apps.assignment import realtime

POLL_PATH = "/api/v1/agent/state/"
POLL_TOKEN_HEADER = "X-Poll-Token"
# The answers both paths give (the view reads them from here): status, detail, extra headers.
REFUSALS = {
    "unauthorized": (401, "Missing or expired poll token; reload the workspace.",
                     {"WWW-Authenticate": "PollToken"}),
    "limited": (429, "Too many polls; slow down.", {"Retry-After": "1"}),
}
CACHE_HEADERS = {"Cache-Control": "private, no-cache"}


def version_of(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"')


def _security_headers() -> list[tuple[bytes, bytes]]:
    # What Django's SecurityMiddleware and XFrameOptionsMiddleware add to its own answers.
    headers = [(b"x-frame-options", settings.X_FRAME_OPTIONS.encode())]
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append((b"x-content-type-options", b"nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        headers.append((b"referrer-policy", settings.SECURE_REFERRER_POLICY.encode()))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append((b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode()))
    return headers


class PollFastPath:
    """ASGI middleware: answers `GET /api/v1/agent/state/` itself when it can."""

    def __init__(self, app) -> None:
        self.app = app
        self.security = _security_headers()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope["path"] != POLL_PATH or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        if b"baggage" in headers:  # a tenant other than production is Django's to select
            return await self.app(scope, receive, send)
        token = headers.get(POLL_TOKEN_HEADER.lower().encode(), b"").decode("latin-1")
        known = version_of(headers.get(b"if-none-match", b"").decode("latin-1"))
        try:
            outcome, _agent_id, state = await realtime.state_poll_async(token=token, known_version=known)
        except (redis.RedisError, OSError):
            return await self.app(scope, receive, send)  # Django's view answers 503 with Retry-After
        if outcome == "missing":
            return await self.app(scope, receive, send)
        if outcome in REFUSALS:
            status, detail, extra = REFUSALS[outcome]
            return await self._answer(send, scope, status, {"detail": detail}, extra)
        if outcome == "not_modified":
            return await self._answer(send, scope, 304, None, {**CACHE_HEADERS, "ETag": f'"{known}"'})
        return await self._answer(send, scope, 200, state, {**CACHE_HEADERS, "ETag": f'"{state["version"]}"'})

    async def _answer(self, send, scope, status: int, document: dict | None, extra: dict[str, str]) -> None:
        body = b"" if document is None else json.dumps(document, separators=(",", ":")).encode()
        headers = [*self.security, *((name.lower().encode(), value.encode())
                                     for name, value in extra.items())]
        if document is not None:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})
