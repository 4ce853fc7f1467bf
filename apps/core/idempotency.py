"""Idempotency-Key for creating API requests: a client's retry with the same key gets the first
answer again (header `Idempotent-Replayed: true`) instead of creating a second object.

Keys belong to the authenticated user and live IDEMPOTENCY_KEY_TTL_HOURS (purged by a beat job).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from datetime import timedelta

import psycopg
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.db.models.functions import Now
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.core.errors import ApplicationError, Conflict, InvalidInput
from apps.core.models import IdempotencyKey

KEY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY_META = "HTTP_IDEMPOTENCY_KEY"
# The model's check constraint holds the same rule.
_KEY_RULE = re.compile(r"[ -~]{1,255}")
# How long a retry waits for the first request with its key to finish before it answers 409.
IN_FLIGHT_WAIT_S = 10

KEY_PARAMETER = OpenApiParameter(
    KEY_HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description=(
        "Optional, 1-255 printable ASCII characters, unique per request you mean (a UUID). A retry "
        "with the same key and body gets the first answer again, with `Idempotent-Replayed: true`; "
        "the same key with another body is refused with 422."
    ),
)

_CLAIM_SQL = f"""
INSERT INTO {IdempotencyKey._meta.db_table} (user_id, key, method, path, fingerprint)
VALUES (%(user)s, %(key)s, %(method)s, %(path)s, %(fingerprint)s)
ON CONFLICT (user_id, key) DO NOTHING
RETURNING id
"""


class IdempotencyKeyReused(ApplicationError):
    status_code = 422

    def __init__(self, message: str) -> None:
        super().__init__(message, errors={KEY_HEADER: [message]}, code="idempotency_key_reused")


def key_ttl() -> timedelta:
    return timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)


def key_error(key: str) -> str | None:
    """Why `key` cannot be an Idempotency-Key (None when it can)."""
    if _KEY_RULE.fullmatch(key) is None:
        return "Must be 1 to 255 printable ASCII characters."
    return None


def _update(digest, *parts: bytes) -> None:
    # Length-prefixed, so that no two different requests feed the same bytes.
    for part in parts:
        digest.update(b"%d:" % len(part))
        digest.update(part)


def request_fingerprint(request) -> str:
    """sha256 of what the request sends.

    A multipart body is digested as its parsed fields and files: its boundary is chosen anew by
    the client for each attempt, so the raw bytes of a retry differ.
    """
    digest = hashlib.sha256()
    if (request.content_type or "").split(";")[0].strip().lower() == "multipart/form-data":
        for name in sorted(request.data.keys()):
            for value in request.data.getlist(name):
                if hasattr(value, "chunks"):
                    _update(digest, name.encode(), b"file", (value.name or "").encode())
                    content = hashlib.sha256()
                    for chunk in value.chunks():
                        content.update(chunk)
                    value.seek(0)
                    _update(digest, content.digest())
                else:
                    _update(digest, name.encode(), b"field", str(value).encode("utf-8", "surrogatepass"))
    else:
        _update(digest, request.body)
    return digest.hexdigest()


def _key_claim(*, user_id: int, key: str, method: str, path: str, fingerprint: str) -> int | None:
    """Insert the key; its id, or None when a committed request already holds it.

    A request holding it in a transaction still open makes the insert wait (the unique index),
    up to IN_FLIGHT_WAIT_S, then Conflict: two racing requests can never both go on to create.
    """
    params = {"user": user_id, "key": key, "method": method, "path": path, "fingerprint": fingerprint}
    try:
        # A savepoint: a timed-out wait rolls back to here, lock_timeout included.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('lock_timeout'), set_config('lock_timeout', %s, true)",
                [f"{IN_FLIGHT_WAIT_S}s"],
            )
            previous = cursor.fetchone()[0]
            cursor.execute(_CLAIM_SQL, params)
            row = cursor.fetchone()
            # The view's own statements wait for locks as they always do.
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [previous])
    except OperationalError as exc:
        if isinstance(exc.__cause__, psycopg.errors.LockNotAvailable):
            raise Conflict(
                "A request with this Idempotency-Key is still being processed; retry shortly.",
                errors={KEY_HEADER: ["In use by a request that has not finished yet."]},
            ) from exc
        raise
    return row[0] if row else None


def _replay(stored: IdempotencyKey, *, method: str, path: str, fingerprint: str) -> Response:
    if (stored.method, stored.path) != (method, path):
        raise IdempotencyKeyReused(
            f"This Idempotency-Key was used for another request ({stored.method} {stored.path})."
        )
    if stored.fingerprint != fingerprint:
        raise IdempotencyKeyReused("This Idempotency-Key was used with a different request body.")
    return Response(stored.response_body, status=stored.response_status, headers={REPLAYED_HEADER: "true"})


def idempotent(handler):
    """Decorate an API view's creating handler (post, create, a POST action) to honour the header.

    The key row is inserted first and the answer written to it last, in one transaction with
    everything the handler writes: they commit together or not at all, so a crash in between
    leaves neither, and the retry creates the object once. A handler that raises (a 4xx) rolls
    back its key too: nothing was created, and the corrected request may use the key again.
    Answers of 5xx are not kept either. Without the header the handler runs as before.
    """

    @functools.wraps(handler)
    def wrapper(view, request, *args, **kwargs):
        key = request.META.get(_KEY_META)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if (error := key_error(key)) is not None:
            raise InvalidInput(f"Invalid {KEY_HEADER} header.", errors={KEY_HEADER: [error]})
        if not request.user.is_authenticated:
            raise InvalidInput(
                f"Invalid {KEY_HEADER} header.",
                errors={KEY_HEADER: ["Keys belong to a user: authenticate to use one."]},
            )
        fingerprint = request_fingerprint(request)
        request_id = {"method": request.method, "path": request.path, "fingerprint": fingerprint}
        user_id = request.user.pk
        with transaction.atomic():
            for _ in range(2):
                key_id = _key_claim(user_id=user_id, key=key, **request_id)
                if key_id is not None:
                    break
                stored = IdempotencyKey.objects.filter(user_id=user_id, key=key).first()
                if stored is not None:
                    return _replay(stored, **request_id)
                # Purged between the two statements: claim it afresh.
            else:
                raise Conflict("The Idempotency-Key could not be claimed; retry.")
            response = handler(view, request, *args, **kwargs)
            keep = IdempotencyKey.objects.filter(pk=key_id)
            if response.status_code >= 500:
                keep.delete()
            else:
                data = getattr(response, "data", None)
                body = None if data is None else json.loads(JSONRenderer().render(data))
                keep.update(response_status=response.status_code, response_body=body)
        return response

    return extend_schema(parameters=[KEY_PARAMETER])(wrapper)


def idempotency_keys_purge(*, batch_size: int = 5000) -> int:
    """Beat job: delete keys past their TTL, in batches (by the created_at index)."""
    deleted = 0
    expired = IdempotencyKey.objects.filter(created_at__lt=Now() - key_ttl())
    while ids := list(expired.values_list("id", flat=True)[:batch_size]):
        IdempotencyKey.objects.filter(id__in=ids).delete()
        deleted += len(ids)
    return deleted
