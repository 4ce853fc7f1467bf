"""Targeting rules for proactive signals (their JSON Schema, matching) and the experiment split:
pure logic, no queries.

A queue's `QueueConfig.targeting` looks like::

    {"signal_types": ["late_delivery"],
     "conditions": [{"path": "minutes_late", "op": "gte", "value": 30}],
     "priority": 3,
     "experiment": {"name": "late-delivery-outreach-2026", "treatment_percent": 50}}

All conditions must hold for the queue to take the signal. The split hashes the delivery id
with the experiment name (SHA-256), so a delivery lands in the same group on every retry,
machine and process, and different experiments split independently.
"""

from __future__ import annotations

import hashlib
from typing import Any

from apps.cases.models import PRIORITY_SCHEMA

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "exists")
_MISSING = object()

# The targeting document as JSON Schema, validated as part of a queue config's. Signal types are
# what the signal API accepts (slugs); a key nothing reads is refused, since a typo there would
# silently change which signals a queue takes.
_SIGNAL_TYPES = "Must be a list of signal type names (letters, digits, '-' and '_')."
TARGETING_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "x-message": "Must be an object.",
    "properties": {
        "signal_types": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^[-a-zA-Z0-9_]{1,64}$", "x-message": _SIGNAL_TYPES},
            "x-message": _SIGNAL_TYPES,
        },
        "conditions": {
            "type": "array",
            "x-message": "Must be a list.",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["path", "op"],
                "properties": {
                    "path": {"type": "string", "pattern": r"^[^.]+(\.[^.]+)*$",
                             "x-message": "Needs a non-empty 'path' (dotted, e.g. 'order.total')."},
                    "op": {"enum": list(OPERATORS),
                           "x-message": f"Unknown operator; use one of {', '.join(OPERATORS)}."},
                    "value": {},
                },
                "allOf": [
                    {"if": {"properties": {"op": {"const": "in"}}},
                     "then": {"required": ["value"],
                              "properties": {"value": {"type": "array", "x-message": "'in' needs a list."}}}},
                    {"if": {"properties": {"op": {"const": "exists"}}},
                     "then": {"properties": {"value": {"type": "boolean",
                                                       "x-message": "'exists' takes true or false."}}}},
                ],
            },
        },
        "priority": PRIORITY_SCHEMA,
        "experiment": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "x-message": "Needs a 'name'.",
            "properties": {
                "name": {"type": "string", "minLength": 1, "maxLength": 100, "x-message": "Needs a 'name'."},
                "treatment_percent": {"type": "number", "minimum": 0, "maximum": 100,
                                      "x-message": "A number from 0 to 100."},
            },
        },
    },
}


def _lookup(payload: dict, path: str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return _MISSING
        value = value[part]
    return value


def condition_holds(condition: dict, payload: dict) -> bool:
    op, expected = condition["op"], condition.get("value")
    actual = _lookup(payload, condition["path"])
    if op == "exists":
        return (actual is not _MISSING) == bool(expected if expected is not None else True)
    if actual is _MISSING:
        return False
    try:
        if op == "eq":
            return actual == expected
        if op == "ne":
            return actual != expected
        if op == "in":
            return actual in expected
        if op == "gt":
            return actual > expected
        if op == "gte":
            return actual >= expected
        if op == "lt":
            return actual < expected
        if op == "lte":
            return actual <= expected
    except TypeError:  # comparing a string with a number: the rule simply does not match
        return False
    return False


def targeting_matches(targeting: dict, signal_type: str, payload: dict) -> bool:
    if signal_type not in targeting.get("signal_types", []):
        return False
    return all(condition_holds(c, payload) for c in targeting.get("conditions", []))


def experiment_bucket(experiment: str, delivery_ref: str) -> int:
    """0..9999, stable for (experiment, delivery)."""
    digest = hashlib.sha256(f"{experiment}:{delivery_ref}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000


def experiment_group(targeting: dict, delivery_ref: str) -> tuple[str, str]:
    """(experiment name, "treatment" | "control" | "none") for a delivery."""
    experiment = targeting.get("experiment") or {}
    name = experiment.get("name", "")
    if not name:
        return "", "none"
    percent = float(experiment.get("treatment_percent", 50))
    in_treatment = experiment_bucket(name, delivery_ref) < percent * 100
    return name, "treatment" if in_treatment else "control"

