"""How outside records are fetched: the `ContextClient` protocol, the HTTP client used by default,
and the registry that picks the client a deployment configures (CASEHUB_CONTEXT_CLIENT)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import quote

import httpx
from django.conf import settings
from django.utils.module_loading import import_string

from apps.core.tenancy import outbound_drop_baggage


class ContextUnavailable(Exception):
    """The outside system could not give the record: down, slow, refused, or answered nonsense."""


class ContextClient(Protocol):
    def fetch(self, type: str, key: str) -> dict:
        """The record's data; ContextUnavailable when it cannot be had."""

    def fetch_many(self, type: str, keys: Sequence[str]) -> dict[str, dict]:
        """Data by key for the keys the outside system knows; ContextUnavailable for the batch."""


def checked_record(value, *, limit: int) -> dict:
    """Outside data as it may be stored and shown: a JSON object that PostgreSQL's jsonb accepts."""
    if not isinstance(value, dict):
        raise ContextUnavailable("answered something other than a JSON object")
    text = json.dumps(value)
    if len(text) > limit:
        raise ContextUnavailable(f"record larger than {limit} bytes")
    if "\\u0000" in text:  # jsonb refuses NUL; the row must never fail to store
        raise ContextUnavailable("record holds a NUL character")
    return value


class HttpContextClient:
    """GET {base}/{key} for one record, POST {base}/_bulk {"keys": [...]} for many, where base is
    CASEHUB_CONTEXT_TYPE_URLS[type] or CASEHUB_CONTEXT_URL/{type}. Short timeouts: a slow system
    costs a page under CASEHUB_CONTEXT_*_TIMEOUT_S, and the cached copy is shown instead."""

    def __init__(self) -> None:
        # Other services never see the tenant (or any baggage) our caller sent us.
        self._http = httpx.Client(follow_redirects=False, headers={"Accept": "application/json"},
                                  event_hooks={"request": [outbound_drop_baggage]})

    def _base(self, type: str) -> str:
        base = settings.CASEHUB_CONTEXT_TYPE_URLS.get(type) or (
            f"{settings.CASEHUB_CONTEXT_URL.rstrip('/')}/{type}" if settings.CASEHUB_CONTEXT_URL else "")
        if not base:
            raise ContextUnavailable(f"no {type} system is configured")
        return base.rstrip("/")

    def _call(self, method: str, url: str, *, max_bytes: int, **kwargs):
        read = settings.CASEHUB_CONTEXT_READ_TIMEOUT_S
        timeout = httpx.Timeout(read, connect=settings.CASEHUB_CONTEXT_CONNECT_TIMEOUT_S)
        try:
            response = self._http.request(method, url, timeout=timeout, **kwargs)
        except httpx.TimeoutException as exc:
            raise ContextUnavailable("timed out") from exc
        except httpx.HTTPError as exc:
            raise ContextUnavailable(f"unreachable ({type(exc).__name__})") from exc
        if response.status_code == 404:
            raise ContextUnavailable("not known there")
        if response.status_code != 200:
            raise ContextUnavailable(f"answered HTTP {response.status_code}")
        if len(response.content) > max_bytes:
            raise ContextUnavailable("answer too large")
        try:
            return response.json()
        except ValueError as exc:
            raise ContextUnavailable("answered invalid JSON") from exc

    def fetch(self, type: str, key: str) -> dict:
        limit = settings.CASEHUB_CONTEXT_MAX_BYTES
        body = self._call("GET", f"{self._base(type)}/{quote(key, safe='')}", max_bytes=limit)
        return checked_record(body, limit=limit)

    def fetch_many(self, type: str, keys: Sequence[str]) -> dict[str, dict]:
        limit = settings.CASEHUB_CONTEXT_MAX_BYTES
        body = self._call("POST", f"{self._base(type)}/_bulk", json={"keys": list(keys)},
                          max_bytes=limit * (len(keys) + 1))
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, dict):
            raise ContextUnavailable("bulk answer without a records object")
        wanted = set(keys)
        result = {}
        for key, value in records.items():
            if key in wanted:
                try:
                    result[key] = checked_record(value, limit=limit)
                except ContextUnavailable:
                    continue  # one bad record keeps its cached copy; the others still refresh
        return result


@functools.cache
def _client(path: str) -> ContextClient:
    return import_string(path)()


def context_client() -> ContextClient:
    """The configured client, one per process (it keeps its connections)."""
    return _client(settings.CASEHUB_CONTEXT_CLIENT)
