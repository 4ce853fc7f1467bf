"""Targeting rules for proactive signals and the experiment split: pure logic, no ORM.

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

OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "exists")
_MISSING = object()


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


def targeting_errors(targeting: Any) -> dict[str, list[str]]:
    """Problems with a targeting document, keyed by dotted path."""
    if not isinstance(targeting, dict):
        return {"targeting": ["Must be an object."]}
    errors: dict[str, list[str]] = {}
    types = targeting.get("signal_types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
        errors["targeting.signal_types"] = ["Must be a list of signal type names."]
    conditions = targeting.get("conditions", [])
    if not isinstance(conditions, list):
        errors["targeting.conditions"] = ["Must be a list."]
        conditions = []
    for i, cond in enumerate(conditions):
        if not isinstance(cond, dict) or not isinstance(cond.get("path"), str) or not cond.get("path"):
            errors[f"targeting.conditions.{i}"] = ["Needs a non-empty 'path'."]
        elif cond.get("op") not in OPERATORS:
            errors[f"targeting.conditions.{i}.op"] = [f"Unknown operator; use one of {', '.join(OPERATORS)}."]
        elif cond["op"] == "in" and not isinstance(cond.get("value"), list):
            errors[f"targeting.conditions.{i}.value"] = ["'in' needs a list."]
    experiment = targeting.get("experiment")
    if experiment is not None:
        if not isinstance(experiment, dict) or not isinstance(experiment.get("name"), str):
            errors["targeting.experiment"] = ["Needs a 'name'."]
        else:
            pct = experiment.get("treatment_percent", 50)
            if not isinstance(pct, int | float) or isinstance(pct, bool) or not 0 <= pct <= 100:
                errors["targeting.experiment.treatment_percent"] = ["A number from 0 to 100."]
    priority = targeting.get("priority")
    if priority is not None and (not isinstance(priority, int) or not 1 <= priority <= 4):
        errors["targeting.priority"] = ["An integer from 1 to 4."]
    return errors
