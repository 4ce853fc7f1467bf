"""The edge of every request: bodies over the size limit, query strings and paths PostgreSQL could
not store, and Django's lazily raised request limits get a 4xx with a message (JSON for the API,
a short text page elsewhere) before or instead of reaching a view that would answer 500."""

from __future__ import annotations

import logging
from functools import cache
from urllib.parse import unquote_to_bytes

from asgiref.sync import async_to_sync, iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve, reverse

from apps.core.errors import (
    ApplicationError,
    InvalidInput,
    PayloadTooLarge,
    abandon_failed_transaction,
    request_limit_error,
    unchecked_input_error,
)
from apps.core.input import shown, storable_text_error
from apps.core.tenancy import PRODUCTION, tenant_activate, tenant_from_baggage

logger = logging.getLogger(__name__)

NOT_UTF8_MESSAGE = "Not valid UTF-8: percent-encoded bytes must spell UTF-8 text."


def body_limit(request: HttpRequest) -> int | None:
    """The largest body accepted, by its declared Content-Length (None: no limit).

    Django leaves file parts of a multipart body out of DATA_UPLOAD_MAX_MEMORY_SIZE (they are
    streamed to disk), so uploads have their own limit, UPLOAD_MAX_BYTES: a CSV feed may be as
    large as its own rule allows and is still refused before it is read when far larger.
    """
    content_type = (request.META.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()
    data_limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if content_type == "multipart/form-data":
        return settings.UPLOAD_MAX_BYTES
    return data_limit


def content_length_error(request: HttpRequest) -> ApplicationError | None:
    raw = request.META.get("CONTENT_LENGTH") or "0"
    try:
        length = int(raw)
    except ValueError:
        length = -1
    if length < 0:  # Django would fail on it with a 500 once the body is read
        return InvalidInput(
            "Invalid Content-Length header.",
            errors={"Content-Length": ["Must be a whole number of bytes."]},
        )
    limit = body_limit(request)
    if limit is not None and length > limit:
        return PayloadTooLarge(limit)
    return None


def query_string_errors(query_string: str) -> dict[str, list[str]]:
    """Parameters whose name or value is not UTF-8 or cannot be stored, by parameter name.

    Django decodes a query string leniently (a bad byte becomes U+FFFD, %00 a NUL), so the raw
    string is read here: WSGI hands it over as Latin-1 characters of the raw bytes.
    """
    try:
        raw = query_string.encode("latin-1")
    except UnicodeEncodeError:  # ASGI: already decoded as UTF-8
        raw = query_string.encode("utf-8", "surrogatepass")
    errors: dict[str, list[str]] = {}
    for pair in raw.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name_bytes = unquote_to_bytes(raw_name.replace(b"+", b" "))
        try:
            name = name_bytes.decode("utf-8")
        except UnicodeDecodeError:
            errors.setdefault(name_bytes.decode("utf-8", "backslashreplace"), []).append(
                f"The parameter name is refused. {NOT_UTF8_MESSAGE}"
            )
            continue
        name_problem = storable_text_error(name)
        if name_problem:
            errors.setdefault(shown(name), []).append(f"The parameter name is refused. {name_problem}")
            continue
        try:
            value = unquote_to_bytes(raw_value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            errors.setdefault(name, []).append(NOT_UTF8_MESSAGE)
            continue
        value_problem = storable_text_error(value)
        if value_problem:
            errors.setdefault(name, []).append(value_problem)
    return errors


def query_error(request: HttpRequest) -> ApplicationError | None:
    query_string = request.META.get("QUERY_STRING") or ""
    if not query_string:
        return None
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    if limit is not None and query_string.count("&") >= limit:
        # Django counts the same way and would raise TooManyFieldsSent when the view reads it.
        return InvalidInput(f"Too many query parameters; the limit is {limit}.", code="too_many_fields")
    errors = query_string_errors(query_string)
    if errors:
        return InvalidInput("Invalid query parameters.", errors=errors)
    return None


def path_error(request: HttpRequest) -> ApplicationError | None:
    """A path with text PostgreSQL cannot store (%00), named by its path parameter.

    Bytes that are not UTF-8 need no check here: Django (WSGI) percent-encodes them again and
    ASGI servers decode them as U+FFFD, so a view only ever sees storable text for them.
    """
    problem = storable_text_error(request.path_info)
    if problem is None:
        return None
    name = "path"
    try:
        match = resolve(request.path_info)
    except Resolver404:
        pass
    else:  # name the path parameter, as a client knows it from the API's schema
        unstorable = [key for key, value in match.kwargs.items()
                      if isinstance(value, str) and storable_text_error(value)]
        name = unstorable[0] if unstorable else name
    return InvalidInput("Invalid path.", errors={name: [problem]})


def wants_json(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/") or "json" in request.META.get("HTTP_ACCEPT", "")


def error_response(request: HttpRequest, error: ApplicationError) -> HttpResponse:
    """The API's error shape ({"detail", "code", "errors"}); a short text page for people."""
    if wants_json(request):
        body = {"detail": error.message, "code": error.code}
        if error.errors:
            body["errors"] = error.errors
        return JsonResponse(body, status=error.status_code)
    lines = [error.message, *(f"{field}: {message}" for field, messages in error.errors.items()
                              for message in messages)]
    return HttpResponse("\n".join(lines) + "\n", content_type="text/plain; charset=utf-8",
                        status=error.status_code)


class HybridMiddleware:
    """A middleware that runs in a sync or an async chain, whichever Django builds: __call__
    returns __acall__'s coroutine in the async one."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)


class EdgeMiddleware(HybridMiddleware):
    """Refuses what no view should see; maps Django's request limits and input that failed in the
    database to 4xx. Place it first after SecurityMiddleware: nothing before it reads the request."""

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        refusal = self.refusal(request)
        return refusal if refusal is not None else self.get_response(request)

    async def __acall__(self, request):
        refusal = self.refusal(request)
        return refusal if refusal is not None else await self.get_response(request)

    def refusal(self, request: HttpRequest) -> HttpResponse | None:
        error = content_length_error(request) or query_error(request) or path_error(request)
        return error_response(request, error) if error is not None else None

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        # Views outside DRF (admin, pages, probes); DRF views are answered by the API's handler.
        error = request_limit_error(exception)
        if error is None:
            error = unchecked_input_error(exception)
            if error is not None:
                abandon_failed_transaction(exception)
                match = request.resolver_match
                logger.warning(
                    "Unchecked input reached %s: %s: %s",
                    match.view_name if match else request.path_info, type(exception).__name__, exception,
                )
        return error_response(request, error) if error is not None else None


@cache
def _admin_prefix() -> str:
    return reverse("admin:index")


class TenantMiddleware(HybridMiddleware):
    """Runs a request whose W3C baggage names the sandbox (`tenant=sandbox`) as the sandbox: in one
    transaction whose search_path puts the sandbox schema first (apps.core.tenancy). Requests
    without a tenant in their baggage pass through untouched, with no query. A malformed header
    or unknown tenant is a 400. The admin serves production only: a sandbox request for it is a
    400 too, rather than production answering a client that believes it is in the sandbox."""

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        refusal = self.refusal(request)
        if refusal is not None:
            return refusal
        if request.tenant == PRODUCTION:
            return self.get_response(request)
        with tenant_activate(request.tenant):
            return self.get_response(request)

    async def __acall__(self, request):
        refusal = self.refusal(request)
        if refusal is not None:
            return refusal
        if request.tenant == PRODUCTION:
            return await self.get_response(request)
        # One thread, so one connection, holds the transaction for the whole request.
        return await sync_to_async(self._in_tenant, thread_sensitive=True)(request)

    def _in_tenant(self, request):
        with tenant_activate(request.tenant):
            return async_to_sync(self.get_response)(request)

    def refusal(self, request: HttpRequest) -> HttpResponse | None:
        try:
            request.tenant = tenant_from_baggage(request.META.get("HTTP_BAGGAGE"))
        except ApplicationError as error:
            return error_response(request, error)
        if request.tenant != PRODUCTION and request.path_info.startswith(_admin_prefix()):
            return error_response(request, InvalidInput(
                "The admin serves production only.",
                errors={"baggage": [f"Remove tenant={request.tenant} to use the admin."]},
                code="production_only"))
        return None
