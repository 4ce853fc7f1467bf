"""JSON Schema validation with field-level messages (used for dynamic fields and specs)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


def schema_errors(schema: dict) -> list[str]:
    """Problems with a schema itself (an ops user may have written it)."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return [exc.message]
    return []


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Draft202012Validator:
    import json

    return Draft202012Validator(json.loads(schema_json), format_checker=Draft202012Validator.FORMAT_CHECKER)


def json_errors(instance: Any, schema: dict) -> dict[str, list[str]]:
    """Validate `instance` against `schema`; map dotted field paths to messages.

    A missing required property is reported under its own name, so a form or API client can
    show it next to the field. Errors on the whole document go under "non_field_errors".
    """
    import json

    validator = _validator(json.dumps(schema, sort_keys=True))
    errors: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.path)):
        path = [str(p) for p in error.absolute_path]
        if error.validator == "required":
            missing = error.message.split("'")[1] if "'" in error.message else ""
            path.append(missing)
            message = "This field is required."
        else:
            message = error.message
        errors.setdefault(".".join(path) or "non_field_errors", []).append(message)
    return errors
