"""The one error type services raise; the API and admin map it to a clear message.
Errors that unchecked input causes in Django or the database are translated to it here."""

from __future__ import annotations

import os
import traceback

import psycopg
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.db import DataError, connections


class ApplicationError(Exception):
    """A business rule said no. `errors` maps field names to messages (field-level errors)."""

    status_code = 400

    def __init__(self, message: str, *, errors: dict | None = None, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or {}
        self.code = code


class NotFound(ApplicationError):
    status_code = 404

    def __init__(self, message: str = "Not found.", **kwargs) -> None:
        super().__init__(message, code="not_found", **kwargs)


class Conflict(ApplicationError):
    status_code = 409

    def __init__(self, message: str, **kwargs) -> None:
        kwargs.setdefault("code", "conflict")
        super().__init__(message, **kwargs)


class InvalidInput(ApplicationError):
    """Input refused at the edge, before any business rule saw it: unparsable, unstorable, out of range."""


class PayloadTooLarge(ApplicationError):
    status_code = 413

    def __init__(self, limit: int, **kwargs) -> None:
        kwargs.setdefault("code", "too_large")
        super().__init__(f"The request body is too large; the limit is {limit} bytes.", **kwargs)
        self.limit = limit


def request_limit_error(exc: BaseException) -> ApplicationError | None:
    """Django's own request limits, raised when a body or query string is read lazily, as errors
    with a message (Django answers them with an HTML 400 page of its own)."""
    if isinstance(exc, RequestDataTooBig):
        return PayloadTooLarge(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
    if isinstance(exc, TooManyFieldsSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
        return InvalidInput(f"Too many fields or parameters; the limit is {limit}.", code="too_many_fields")
    if isinstance(exc, TooManyFilesSent):
        limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
        return InvalidInput(f"Too many files; the limit is {limit}.", code="too_many_files")
    return None


def unchecked_input_error(exc: BaseException, *, filtering: bool = False) -> InvalidInput | None:
    """The 400 that an exception stands for when input got past the edge checks and failed deeper
    down (None for any other exception, which stays a 500). A last resort: every hit means a
    check is missing, so callers log it. `filtering`: raised while a queryset was being filtered,
    where a ValueError or OverflowError comes from converting a query parameter."""
    if isinstance(exc, DataError | psycopg.DataError):
        # The database's own words name the value's problem (NUL, out of range, bad offset).
        reason = (str(exc).strip().splitlines() or ["invalid value"])[0]
        return InvalidInput(
            "A value in the request cannot be stored or compared.", errors={"non_field_errors": [reason]}
        )
    if isinstance(exc, RecursionError) and _raised_by_document_parser(exc):
        return InvalidInput(
            "A document in the request is nested too deeply.",
            errors={"non_field_errors": ["The document is nested too deeply to be read."]},
            code="parse_error",
        )
    if filtering and isinstance(exc, ValueError | OverflowError):
        return InvalidInput("A filter value is out of range.", errors={"non_field_errors": [str(exc)]})
    return None


def abandon_failed_transaction(exc: BaseException) -> None:
    """After a DataError PostgreSQL has aborted the transaction: an atomic block still open around
    the view must roll back, not try to commit, once the error has become a response."""
    if isinstance(exc, DataError | psycopg.DataError):
        for connection in connections.all(initialized_only=True):
            if connection.in_atomic_block:
                connection.set_rollback(True)


# Parsers of JSON and YAML documents recurse once per level of nesting, so only input can make
# them run out of stack; a RecursionError anywhere else is a bug of ours and stays a 500.
_DOCUMENT_PARSERS = tuple(f"{os.sep}{package}{os.sep}" for package in ("json", "yaml"))


def _raised_by_document_parser(exc: BaseException) -> bool:
    # The innermost Python frame (json's scanner recurses in C, under json.decoder).
    frames = list(traceback.walk_tb(exc.__traceback__))
    return bool(frames) and any(part in frames[-1][0].f_code.co_filename for part in _DOCUMENT_PARSERS)
