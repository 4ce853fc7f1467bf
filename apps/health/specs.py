"""Spec documents: parse YAML/JSON text and validate it (schema, then rules per check type).

Pure functions with no writes: `apps.health.services.health_spec_apply` is the one place
that calls them before anything is stored. Parsing is bounded in input and in output: YAML
aliases cannot expand a small text into a huge document ("billion laughs").
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from apps.core.input import JSONDocumentError, json_document_errors, json_document_load, storable_text_error
from apps.core.validation import json_errors
from apps.health.checks import REGISTRY

CHECK_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}$"
# A host name as settings.CASEHUB_HOST_NAME gives it (socket.gethostname() by default).
HOST_NAME_SCHEMA = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$"}
SPEC_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
# A run is one Celery task with a time limit; no single check may hold it longer than this.
MAX_TIMEOUT_S = 60
DEFAULTS = {"interval": 30.0, "timeout": 5.0, "grace_period": 0.0}
# A spec of a few hundred checks is some tens of kilobytes; these leave room for ten times that.
MAX_DOCUMENT_CHARS = 256 * 1024
# Counted as if every alias were written out: the size of what validation, storage and the
# runner would walk.
MAX_DOCUMENT_NODES = 100_000


class DocumentTooLarge(yaml.YAMLError):
    pass


class SpecLoader(yaml.SafeLoader):
    """SafeLoader that yields JSON types only and refuses documents whose aliases expand past
    MAX_DOCUMENT_NODES nodes, or refer to themselves (a cycle no JSON document can be).

    PyYAML shares an aliased node instead of copying it, so loading stays cheap; it is every
    reader after it (schema validation, json.dumps, the database) that would expand the aliases.
    """

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self.expanded_nodes = 0
        self.expanded_size: dict[int, int] = {}  # id(node) -> its node count with aliases expanded

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = self.anchors.get(event.anchor)
            if node is not None:  # else PyYAML reports the undefined alias
                size = self.expanded_size.get(id(node))
                if size is None:
                    raise DocumentTooLarge(f"The alias *{event.anchor} refers to a node that contains it "
                                           f"(line {event.start_mark.line + 1}).")
                self._grow(size)
            return super().compose_node(parent, index)
        start = self.expanded_nodes
        node = super().compose_node(parent, index)
        self._grow(1)
        self.expanded_size[id(node)] = self.expanded_nodes - start
        return node

    def _grow(self, nodes: int) -> None:
        self.expanded_nodes += nodes
        if self.expanded_nodes > MAX_DOCUMENT_NODES:
            raise DocumentTooLarge(
                f"The document has more than {MAX_DOCUMENT_NODES} values once its aliases are expanded."
            )

    def refuse_tag(self, node):
        raise yaml.constructor.ConstructorError(
            None, None, f"The tag {node.tag} has no JSON equivalent.", node.start_mark
        )


# A date or time stays the text it was written as, as in JSON; types JSON has no form for are refused.
SpecLoader.add_constructor("tag:yaml.org,2002:timestamp", SpecLoader.construct_yaml_str)
for _tag in ("binary", "set", "omap", "pairs"):
    SpecLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", SpecLoader.refuse_tag)

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
                "host": HOST_NAME_SCHEMA,
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
                    # Only the runner of this host runs the check (see HealthCheck.host).
                    "host": HOST_NAME_SCHEMA,
                    "params": {"type": "object"},
                },
            },
        },
    },
}


def document_parse(document: str | dict) -> tuple[Any, str, str, dict[str, list[str]]]:
    """(data, source text, format, errors). JSON when the text starts with "{", else YAML.

    Errors name the value's path ("checks.0.params.url") when a value cannot be taken (NUL,
    1e999, nesting past the limit), else "document".
    """
    if isinstance(document, dict):
        return document, json.dumps(document, indent=2), "json", _value_errors(document)
    if len(document) > MAX_DOCUMENT_CHARS:
        too_long = f"The document is {len(document)} characters long; the limit is {MAX_DOCUMENT_CHARS}."
        return None, document, "yaml", {"document": [too_long]}
    problem = storable_text_error(document)
    if problem:
        return None, document, "yaml", {"document": [problem]}
    text = document.strip()
    if not text:
        return None, document, "yaml", {"document": ["The document is empty."]}
    if text.startswith("{"):
        try:
            data = json_document_load(text)
        except JSONDocumentError as exc:
            prefix = "Invalid JSON: " if exc.code == "parse_error" else ""
            return None, document, "json", _keyed(exc.errors, prefix=prefix)
        return data, document, "json", {}
    try:
        data = yaml.load(text, Loader=SpecLoader)  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        return None, document, "yaml", {"document": [f"Invalid YAML: {exc}"]}
    except RecursionError:
        return None, document, "yaml", {"document": ["Invalid YAML: nested too deeply."]}
    except ValueError as exc:  # an integer of more than 4300 digits
        return None, document, "yaml", {"document": [f"Invalid YAML: {exc}"]}
    return data, document, "yaml", _value_errors(data)


def _value_errors(data: Any) -> dict[str, list[str]]:
    return _keyed(json_document_errors(data))


def _keyed(errors: dict[str, list[str]], *, prefix: str = "") -> dict[str, list[str]]:
    # A problem of the document as a whole is the "document" field's, as a parse error is.
    return {("document" if path == "non_field_errors" else path): [prefix + message for message in messages]
            for path, messages in errors.items()}


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
        if host := raw.get("host", defaults.get("host")):
            check["host"] = host  # absent when not given: documents from before hosts stay equal
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
