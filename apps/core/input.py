"""Rules for what outside input can be at all, as pure functions: text PostgreSQL can store, JSON
documents of bounded depth with finite numbers, date-times that stay in range. One home for them."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from django.utils.dateparse import parse_datetime

# Deep enough for any document the API takes (specs, dynamic fields, feeds), shallow enough that
# no recursive code of ours, DRF's or the json module's runs out of stack on it.
MAX_JSON_DEPTH = 64
# Integers are refused outside PostgreSQL's bigint, the widest integer column type. jsonb could
# hold more (numeric), but no column could take such a value back, and JSON tooling loses
# precision past 2**53 already: one rule for every field beats knowing where each value goes.
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
# The widest offset in use anywhere is +14:00; ISO 8601 tools (and java.time) accept up to 18 hours.
MAX_UTC_OFFSET = timedelta(hours=18)
# A document with thousands of bad values gets the first ones: enough to fix it, a bounded reply.
MAX_REPORTED = 50

NUL_MESSAGE = "NUL characters (\\u0000) are not allowed: the database cannot store them."
SURROGATE_MESSAGE = "Unpaired surrogates (\\ud800-\\udfff) are not allowed: they are not valid Unicode text."
NOT_FINITE_MESSAGE = "Numbers must be finite: NaN, Infinity and values out of range (1e999) are refused."
INTEGER_RANGE_MESSAGE = f"Whole numbers must be between {BIGINT_MIN} and {BIGINT_MAX}."


def storable_text_error(text: str) -> str | None:
    """Why PostgreSQL text or jsonb cannot hold `text` (None when it can).

    text refuses NUL bytes and jsonb the \\u0000 escape, in values and in object keys alike;
    a lone surrogate has no UTF-8 form, so it cannot reach the database at all.
    """
    if "\x00" in text:
        return NUL_MESSAGE
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def shown(text: str) -> str:
    """`text` as it can be echoed back in a message or an error path (escaped when unstorable)."""
    if storable_text_error(text) is None:
        return text
    return text.encode("unicode_escape").decode("ascii")


def number_error(value: Any) -> str | None:
    """Why a parsed JSON number cannot be taken (None when it can)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return None if BIGINT_MIN <= value <= BIGINT_MAX else INTEGER_RANGE_MESSAGE
    if isinstance(value, float):
        return None if math.isfinite(value) else NOT_FINITE_MESSAGE
    return None


def json_document_errors(
    document: Any, *, max_depth: int = MAX_JSON_DEPTH, strings: bool = True, limit: int = MAX_REPORTED
) -> dict[str, list[str]]:
    """Problems of a parsed JSON document, keyed by dotted path ("items.3.sku").

    Reports nesting deeper than `max_depth` (without descending further), non-finite floats,
    integers outside bigint and, with `strings`, text and object keys PostgreSQL cannot store.
    A problem with the document itself is keyed "non_field_errors", as in `validation.json_errors`.
    Walks with an explicit stack: the document may be as deep as its parser allowed.
    """
    errors: dict[str, list[str]] = {}

    def report(path: list[str], message: str) -> None:
        errors.setdefault(".".join(path) or "non_field_errors", []).append(message)

    def children(container: Any) -> Iterator[tuple[Any, Any]]:
        return iter(container.items()) if isinstance(container, dict) else enumerate(container)

    def scalar_error(value: Any) -> str | None:
        if isinstance(value, str):
            return storable_text_error(value) if strings else None
        return number_error(value)

    if not isinstance(document, dict | list):
        message = scalar_error(document)
        if message:
            report([], message)
        return errors
    if max_depth < 1:
        report([], f"Nested more than {max_depth} levels deep.")
        return errors
    path: list[str] = []  # keys from the root to the container on top of the stack
    stack = [children(document)]
    while stack:
        for key, value in stack[-1]:
            if len(errors) >= limit:
                return errors
            if isinstance(key, str):
                key_error = storable_text_error(key) if strings else None
                key = shown(key) if key_error else key
                if key_error:
                    report([*path, key], f"This key is refused. {key_error}")
            if isinstance(value, dict | list):
                if len(stack) >= max_depth:
                    report([*path, str(key)], f"Nested more than {max_depth} levels deep.")
                    continue
                path.append(str(key))
                stack.append(children(value))
                break
            message = scalar_error(value)
            if message:
                report([*path, str(key)], message)
        else:
            stack.pop()
            if stack:
                path.pop()
    return errors


class JSONDocumentError(ValueError):
    """A JSON text that cannot be taken: `message` for the whole, `errors` by dotted path."""

    def __init__(self, message: str, errors: dict[str, list[str]], *, code: str = "invalid") -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.code = code


def json_document_load(
    text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH, strings: bool = True
) -> Any:
    """Parse a JSON text and apply `json_document_errors`; raise JSONDocumentError if it fails.

    NaN and Infinity literals parse (as floats) only to be reported with their path, like 1e999,
    which Python reads as infinity. A document too deep for the parser's own recursion is
    reported as too deep instead of raising RecursionError.
    """
    too_deep = {"non_field_errors": [f"Nested more than {max_depth} levels deep."]}
    try:
        document = json.loads(text, parse_constant=float)
    except RecursionError:
        raise JSONDocumentError("The JSON document is nested too deeply.", too_deep,
                                code="parse_error") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        raise JSONDocumentError(
            "The body is not valid JSON.", {"non_field_errors": [str(exc)]}, code="parse_error"
        ) from None
    errors = json_document_errors(document, max_depth=max_depth, strings=strings)
    if errors:
        raise JSONDocumentError("The JSON document has values that cannot be taken.", errors)
    return document


def parse_datetime_strict(value: str, *, default_timezone: tzinfo = UTC) -> datetime:
    """An ISO 8601 date-time as an aware datetime in UTC; ValueError with a message otherwise.

    Offsets beyond 18 hours are refused, and so are values whose UTC form falls outside years
    1 to 9999. Returning UTC matters: PostgreSQL refuses offsets of 16 hours and more, which
    Python accepts. A value without an offset is read in `default_timezone`.
    """
    if not isinstance(value, str):
        raise ValueError("Enter a date-time as ISO 8601 text, e.g. 2024-05-01T12:00:00Z.")
    text = value.strip()
    problem = storable_text_error(text)
    if problem:
        raise ValueError(problem)
    offset_message = "The UTC offset must be between -18:00 and +18:00."
    try:
        parsed = parse_datetime(text)
    except ValueError as exc:  # well-formed but impossible: month 13, an offset of a day or more
        message = offset_message if "offset" in str(exc) else f"Not a valid date-time: {exc}"
        raise ValueError(message) from None
    if parsed is None:
        raise ValueError("Enter a date-time in ISO 8601 format, e.g. 2024-05-01T12:00:00Z.")
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=default_timezone)
    offset = parsed.utcoffset()
    if offset is not None and abs(offset) > MAX_UTC_OFFSET:
        raise ValueError(offset_message)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValueError("The date-time is out of range: in UTC it must fall in years 1 to 9999.") from None
