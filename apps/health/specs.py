"""Spec documents: parse YAML/JSON text and validate it (schema, then rules per check type).

Pure functions with no writes: `apps.health.services.health_spec_apply` is the one place
that calls them before anything is stored.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from apps.core.validation import json_errors
from apps.health.checks import REGISTRY

CHECK_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
SPEC_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
# A run is one Celery task with a time limit; no single check may hold it longer than this.
MAX_TIMEOUT_S = 60
DEFAULTS = {"interval": 30.0, "timeout": 5.0, "grace_period": 0.0}

DOCUMENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["checks"],
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "defaults": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "interval": {"type": "number", "minimum": 1},
                "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S},
                "grace_period": {"type": "number", "minimum": 0},
            },
        },
        "checks": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name", "type"],
                "properties": {
                    "name": {"type": "string", "pattern": CHECK_NAME_PATTERN},
                    "type": {"type": "string", "minLength": 1},
                    "interval": {"type": "number", "minimum": 1},
                    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_TIMEOUT_S},
                    "grace_period": {"type": "number", "minimum": 0},
                    "params": {"type": "object"},
                },
            },
        },
    },
}


def document_parse(document: str | dict) -> tuple[Any, str, str, dict[str, list[str]]]:
    """(data, source text, format, errors). JSON when the text starts with "{", else YAML."""
    if isinstance(document, dict):
        return document, json.dumps(document, indent=2), "json", {}
    text = document.strip()
    if not text:
        return None, document, "yaml", {"document": ["The document is empty."]}
    fmt = "json" if text.startswith("{") else "yaml"
    try:
        data = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        return None, document, fmt, {"document": [f"Invalid {fmt.upper()}: {exc}"]}
    return data, document, fmt, {}


def document_validate(data: Any) -> tuple[dict, dict[str, list[str]]]:
    """The normalised document (defaults filled in) and field-level errors keyed by dotted path."""
    if not isinstance(data, dict):
        return {}, {"document": ["The document must be a mapping with a 'checks' list."]}
    errors = json_errors(data, DOCUMENT_SCHEMA)
    if errors:
        return {}, errors
    defaults = {**DEFAULTS, **data.get("defaults", {})}
    seen: dict[str, int] = {}
    checks = []
    for i, raw in enumerate(data["checks"]):
        where = f"checks.{i}"
        check = {
            "name": raw["name"],
            "type": raw["type"],
            "interval": float(raw.get("interval", defaults["interval"])),
            "timeout": float(raw.get("timeout", defaults["timeout"])),
            "grace_period": float(raw.get("grace_period", defaults["grace_period"])),
            "params": raw.get("params", {}),
        }
        checks.append(check)
        if check["name"] in seen:
            first = seen[check["name"]]
            errors[f"{where}.name"] = [f"Duplicate check name {check['name']!r} (also checks.{first})."]
        seen.setdefault(check["name"], i)
        if check["timeout"] > check["interval"]:
            errors[f"{where}.timeout"] = [
                f"The timeout ({check['timeout']:g}s) must not exceed the interval ({check['interval']:g}s)."]
        check_type = REGISTRY.get(check["type"])
        if check_type is None:
            known = ", ".join(sorted(REGISTRY))
            errors[f"{where}.type"] = [f"Unknown check type {check['type']!r}; known: {known}."]
            continue
        param_errors = json_errors(check["params"], check_type.params_schema)
        if not param_errors:
            param_errors = check_type.validate_params(check["params"])
        for key, messages in param_errors.items():
            field = f"{where}.params" if key == "non_field_errors" else f"{where}.params.{key}"
            errors.setdefault(field, []).extend(messages)
    normalised = {key: value for key, value in data.items() if key not in ("checks", "defaults")}
    normalised["checks"] = checks
    return normalised, errors
