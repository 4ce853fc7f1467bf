"""Resource checks: query a Django model or a JSON endpoint, then assert on fields by JSONPath.

A model query is turned into the document {"count": n, "items": [{field: value}, ...]} (at
most `limit` items, only the listed `fields`), so both sources are asserted the same way.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.apps import apps as django_apps
from django.core.exceptions import FieldError, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from jsonpath_ng.exceptions import JSONPathError
from jsonpath_ng.ext import parse as jsonpath_parse

from apps.health.checks.base import Check, CheckOutcome, register
from apps.health.checks.network import http_client, url_errors
from apps.health.checks.platform import bounded_queries

OPERATORS = ("Equals", "NotEmpty", "RegexMatch", "ListContains", "GreaterThan", "LessThan")
# Credentials and sessions are never readable through a health spec.
DENIED_APPS = ("auth", "sessions", "admin", "contenttypes")


def _evaluate(operator: str, values: list[Any], expected: Any) -> str | None:
    """None when the assertion holds, else why not."""
    if not values:
        return "no value at this path"
    if operator == "Equals":
        bad = [v for v in values if v != expected]
        return f"{bad[0]!r} != {expected!r}" if bad else None
    if operator == "NotEmpty":
        return "empty value" if any(v in (None, "", [], {}) for v in values) else None
    if operator == "RegexMatch":
        bad = [v for v in values if not isinstance(v, str) or not re.search(expected, v)]
        return f"{bad[0]!r} does not match {expected!r}" if bad else None
    if operator == "ListContains":
        flat = [x for v in values for x in (v if isinstance(v, list) else [v])]
        return None if expected in flat else f"{expected!r} not in {flat[:10]!r}"
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != len(values):
        return f"not a number: {values[:3]!r}"
    if operator == "GreaterThan":
        bad = [v for v in numbers if not v > expected]
        return f"{bad[0]!r} is not > {expected!r}" if bad else None
    bad = [v for v in numbers if not v < expected]
    return f"{bad[0]!r} is not < {expected!r}" if bad else None


def _model_errors(label: str, filters: dict) -> list[str]:
    try:
        model = django_apps.get_model(label)
    except (LookupError, ValueError):
        return [f"Unknown model {label!r}; use app_label.ModelName."]
    if model._meta.app_label in DENIED_APPS:
        return [f"Models of {model._meta.app_label!r} cannot be queried by a health check."]
    try:
        str(model._default_manager.filter(**filters).query)  # builds the SQL without running it
    except (FieldError, ValidationError, ValueError, TypeError) as exc:
        return [f"Invalid filter: {exc}"]
    return []


@register
class ResourceCheck(Check):
    type_name = "resource"
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["assertions"],
        "oneOf": [{"required": ["model"]}, {"required": ["url"]}],
        "properties": {
            "model": {"type": "string", "pattern": r"^\w+\.\w+$"},
            "filter": {"type": "object"},
            "fields": {"type": "array", "items": {"type": "string"}},
            "limit": {"type": "integer", "minimum": 1, "maximum": 1000},
            "url": {"type": "string"},
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
            "assertions": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["path", "operator"],
                    "properties": {
                        "path": {"type": "string", "minLength": 1},
                        "operator": {"enum": list(OPERATORS)},
                        "value": {},
                    },
                    "allOf": [
                        {"if": {"properties": {"operator": {"enum": ["GreaterThan", "LessThan"]}}},
                         "then": {"required": ["value"], "properties": {"value": {"type": "number"}}}},
                        {"if": {"properties": {"operator": {"const": "RegexMatch"}}},
                         "then": {"required": ["value"], "properties": {"value": {"type": "string"}}}},
                        {"if": {"properties": {"operator": {"enum": ["Equals", "ListContains"]}}},
                         "then": {"required": ["value"]}},
                    ],
                },
            },
        },
    }

    @classmethod
    def validate_params(cls, params):
        errors: dict[str, list[str]] = {}
        if isinstance(params.get("model"), str):
            problems = _model_errors(params["model"], params.get("filter") or {})
            if problems:
                errors["model" if "Invalid filter" not in problems[0] else "filter"] = problems
        if isinstance(params.get("url"), str) and (problems := url_errors(params["url"])):
            errors["url"] = problems
        for i, assertion in enumerate(params.get("assertions") or []):
            if not isinstance(assertion, dict):
                continue
            if isinstance(assertion.get("path"), str):
                try:
                    jsonpath_parse(assertion["path"])
                except (JSONPathError, ValueError, TypeError) as exc:
                    errors[f"assertions.{i}.path"] = [f"Invalid JSONPath: {exc}"]
            if assertion.get("operator") == "RegexMatch" and isinstance(assertion.get("value"), str):
                try:
                    re.compile(assertion["value"])
                except re.error as exc:
                    errors[f"assertions.{i}.value"] = [f"Invalid regular expression: {exc}"]
        return errors

    def document(self) -> Any:
        p = self.params
        if "url" in p:
            response = http_client().get(p["url"], headers=p.get("headers") or {}, timeout=self.ctx.timeout_s)
            response.raise_for_status()
            return response.json()
        model = django_apps.get_model(p["model"])
        qs = model._default_manager.filter(**(p.get("filter") or {}))
        fields = p.get("fields") or ["pk"]
        with bounded_queries(qs.db, self.ctx.timeout_s):
            items = list(qs.order_by("pk").values(*fields)[: p.get("limit", 100)])
            count = qs.count()
        return {"count": count, "items": json.loads(json.dumps(items, cls=DjangoJSONEncoder))}

    def run(self) -> CheckOutcome:
        doc = self.document()
        failures = []
        for assertion in self.params["assertions"]:
            values = [m.value for m in jsonpath_parse(assertion["path"]).find(doc)]
            problem = _evaluate(assertion["operator"], values, assertion.get("value"))
            if problem:
                failures.append(f"{assertion['path']} {assertion['operator']}: {problem}")
        if failures:
            return CheckOutcome.failure("; ".join(failures))
        return CheckOutcome.success(f"{len(self.params['assertions'])} assertion(s) hold")
