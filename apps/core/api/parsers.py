"""The API's default parsers: bodies are refused with a field-level 400 when they hold what the
database cannot store or our code cannot walk (see apps.core.input), before any view sees them."""

from __future__ import annotations

from django.conf import settings
from rest_framework import parsers

from apps.core.errors import InvalidInput
from apps.core.input import JSONDocumentError, json_document_load, shown, storable_text_error


def max_json_depth() -> int:
    return settings.API_JSON_MAX_DEPTH


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the edge rules: no NaN/Infinity/1e999, integers within bigint, no
    NUL or lone surrogate in strings or keys, nesting at most API_JSON_MAX_DEPTH levels (a
    deeper document used to exhaust the parser's recursion: a 500). Errors name their path."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        raw = stream.read()
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as exc:
            raise InvalidInput(
                "The body is not valid JSON.",
                errors={"non_field_errors": [f"The body is not valid {encoding} text: {exc.reason}."]},
                code="parse_error",
            ) from None
        try:
            return json_document_load(text, max_depth=max_json_depth())
        except JSONDocumentError as exc:
            raise InvalidInput(exc.message, errors=exc.errors, code=exc.code) from None


def _form_errors(data, files=None) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for key, values in data.lists():
        key_error = storable_text_error(key)
        if key_error:
            errors.setdefault(shown(key), []).append(f"This key is refused. {key_error}")
        for value in values:
            value_error = storable_text_error(value) if isinstance(value, str) else None
            if value_error:
                errors.setdefault(shown(key), []).append(value_error)
    for key, upload in (files.items() if files is not None else ()):
        name_error = storable_text_error(upload.name or "")
        if name_error:
            errors.setdefault(shown(key), []).append(f"The file name is refused. {name_error}")
    return errors


class FormParser(parsers.FormParser):
    """DRF's form parser, refusing fields PostgreSQL cannot store (Django decodes %00 to NUL)."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        errors = _form_errors(data)
        if errors:
            raise InvalidInput("The form has values that cannot be taken.", errors=errors)
        return data


class MultiPartParser(parsers.MultiPartParser):
    """DRF's multipart parser, refusing text fields and file names PostgreSQL cannot store; file
    contents are the business of whoever reads them."""

    def parse(self, stream, media_type=None, parser_context=None):
        result = super().parse(stream, media_type, parser_context)
        errors = _form_errors(result.data, result.files)
        if errors:
            raise InvalidInput("The form has values that cannot be taken.", errors=errors)
        return result
