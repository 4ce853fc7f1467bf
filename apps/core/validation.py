"""JSON Schema validation with field-level messages (used for dynamic fields, specs and configs)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError, ValidationError

# A keyword of schemas the project writes (never of schemas users write): the one message of a
# rule, so the same rule reads the same wherever it is checked. A template: {value} is the
# refused value, {path[i]} the i-th step of its path from the document's root.
MESSAGE_KEYWORD = "x-message"
# These name an unexpected key; the keyword's own text says which, so it is kept.
_KEY_KEYWORDS = ("additionalProperties", "unevaluatedProperties")


def schema_errors(schema: dict) -> list[str]:
    """Problems with a schema itself (an ops user may have written it)."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return [exc.message]
    return []


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(schema_json), format_checker=Draft202012Validator.FORMAT_CHECKER)


def _own_message(error: ValidationError) -> str | None:
    template = error.schema.get(MESSAGE_KEYWORD) if isinstance(error.schema, dict) else None
    if not isinstance(template, str) or error.validator in _KEY_KEYWORDS:
        return None
    return template.format(value=error.instance, path=[str(p) for p in error.absolute_path])


def json_errors(instance: Any, schema: dict, *, own_messages: bool = False) -> dict[str, list[str]]:
    """Validate `instance` against `schema`; map dotted field paths to messages.

    A missing required property is reported under its own name, so a form or API client can
    show it next to the field. Errors on the whole document go under "non_field_errors".
    With `own_messages`, a subschema's `x-message` (see MESSAGE_KEYWORD) replaces the
    validator's text, once per field; only schemas the project writes should ask for it.
    """
    validator = _validator(json.dumps(schema, sort_keys=True))
    errors: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.path)):
        path = [str(p) for p in error.absolute_path]
        own = _own_message(error) if own_messages else None
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            path.append(missing)
            message = own or "This field is required."
        else:
            message = own or error.message
        bucket = errors.setdefault(".".join(path) or "non_field_errors", [])
        if not (own_messages and message in bucket):
            bucket.append(message)
    return errors
