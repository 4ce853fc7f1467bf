"""Checks of a queue config document before it is saved or published, like an admission webhook:
the meta-schema, then cross-checks against the system (agents' skills and capacity, reachable
statuses, open cases), and the dry run of the new field schema over the queue's open cases."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Count, Max, Q
from jsonschema import Draft202012Validator

from apps.assignment.models import Agent
from apps.cases import selectors
from apps.cases.models import OPEN_STATUSES, Case, Queue, Status
from apps.cases.services.queue_configs import QUEUE_CONFIG_DEFAULTS, queue_config_document_errors
from apps.core.errors import ApplicationError
from apps.core.validation import json_errors

TERMINAL_STATUSES = (Status.RESOLVED, Status.CLOSED)
DRY_RUN_CHUNK = 2000


@dataclass
class ConfigReport:
    """Errors refuse a publish; warnings are shown and allowed. Both by dotted path."""

    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)

    def error(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def warn(self, path: str, message: str) -> None:
        self.warnings.setdefault(path, []).append(message)


def queue_config_check(*, queue: Queue | None, document: Any) -> ConfigReport:
    """The meta-schema's errors; when there are none, the cross-checks against the system.
    `queue` None: a queue that does not exist yet (no cases, no agents)."""
    report = ConfigReport(errors=queue_config_document_errors(document))
    if report.errors:
        return report
    document = {**QUEUE_CONFIG_DEFAULTS, **document}
    _check_statuses(report, document["initial_status"], document["transitions"])
    _check_routing(report, queue, document["routing"], document["sla"])
    if queue is not None:
        _check_new_required(report, queue, document["fields_schema"])
    return report


def _check_statuses(report: ConfigReport, initial: str, transitions: dict[str, list[str]]) -> None:
    """Every status the table names is reachable from the initial one and can reach a terminal one."""
    targets = [status for following in transitions.values() for status in following]
    named = list(dict.fromkeys([initial, *transitions, *targets]))
    reachable = _closure([initial], lambda status: transitions.get(status, []))
    for status in named:
        if status not in reachable:
            report.error(f"transitions.{status}",
                         f"Status '{status}' cannot be reached from the initial status '{initial}'.")
    sources: dict[str, list[str]] = {}
    for source, targets in transitions.items():
        for target in targets:
            sources.setdefault(target, []).append(source)
    finishing = _closure(list(TERMINAL_STATUSES), lambda status: sources.get(status, []))
    for status in named:
        if status in reachable and status not in finishing:
            report.error(f"transitions.{status}",
                         f"A case in '{status}' can never reach {' or '.join(TERMINAL_STATUSES)}.")


def _closure(start: list[str], step) -> set[str]:
    seen, todo = set(start), deque(start)
    while todo:
        for following in step(todo.popleft()):
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


def _check_routing(report: ConfigReport, queue: Queue | None, routing: dict, sla: dict) -> None:
    wanted = {key: routing.get(key) or [] for key in ("skills", "required_skills", "optional_skills")}
    every = {skill for skills in wanted.values() for skill in skills}
    active_agents = Agent.objects.filter(user__is_active=True)
    known: set[str] = set()
    if every:
        for skills in active_agents.filter(skills__overlap=sorted(every)).values_list("skills", flat=True):
            known.update(skills)
    for key, skills in wanted.items():
        for skill in skills:
            if skill not in known:
                report.warn(f"routing.{key}", f"No active agent has the skill '{skill}': cases that "
                                              "need it wait until one does.")
    both = set(wanted["optional_skills"]) & (set(wanted["skills"]) | set(wanted["required_skills"]))
    if both:
        report.warn("routing.optional_skills",
                    f"Also required, so never relaxed: {', '.join(sorted(both))}.")
    if routing.get("relax_after_seconds") is not None and not wanted["optional_skills"]:
        report.warn("routing.relax_after_seconds", "Has no effect without optional skills.")
    first_response = sla.get("first_response_minutes")
    timeout = routing.get("offer_timeout_seconds")
    if first_response and timeout and timeout >= first_response * 60:
        report.warn("routing.offer_timeout_seconds",
                    f"One unanswered offer ({timeout} s) already misses the first-response target "
                    f"({first_response} min).")
    weights = routing.get("channel_weights") or {}
    if queue is not None and weights:
        largest = active_agents.filter(queue_links__queue=queue).aggregate(c=Max("capacity"))["c"]
        for channel, weight in weights.items():
            if largest is not None and weight > largest:
                report.error(f"routing.channel_weights.{channel}",
                             f"A {channel} case weighs {weight} capacity units, but no agent of this queue "
                             f"has more than {largest}: such cases would never be assigned.")


def _check_new_required(report: ConfigReport, queue: Queue, fields_schema: dict) -> None:
    """A field required now and not before: every open case without it would fail its next update."""
    active = selectors.queue_config_active(queue)
    before = set((active.fields_schema or {}).get("required") or []) if active else set()
    added = [name for name in fields_schema.get("required") or [] if name not in before]
    if not added:
        return
    counts = Case.objects.filter(queue=queue, status__in=OPEN_STATUSES).aggregate(
        **{f"f{i}": Count("pk", filter=~Q(fields__has_key=name)) for i, name in enumerate(added)})
    for i, name in enumerate(added):
        if counts[f"f{i}"]:
            report.error(f"fields_schema.properties.{name}",
                         f"Newly required, but {counts[f'f{i}']} open cases have no value for it; fill "
                         "them first or leave the field optional.")


@dataclass
class DryRun:
    """The new field schema over the queue's open cases; nothing is written."""

    checked: int = 0
    failing: int = 0
    # {"case_id": "...", "errors": {"fields.reason": ["..."]}}, the first few failing cases.
    examples: list[dict] = field(default_factory=list)


def queue_config_dry_run(*, queue: Queue, document: Any, examples: int = 5) -> DryRun:
    """How many open cases of the queue the document's field schema refuses, with examples: one
    query read in chunks, each case validated in memory."""
    errors = queue_config_document_errors(document)
    if errors:
        raise ApplicationError("The queue configuration is invalid.", errors=errors)
    schema = document.get("fields_schema") or {}
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    result = DryRun()
    rows = (Case.objects.filter(queue=queue, status__in=OPEN_STATUSES).order_by()
            .values_list("id", "fields").iterator(chunk_size=DRY_RUN_CHUNK))
    for case_id, fields in rows:
        result.checked += 1
        if validator.is_valid(fields):
            continue
        result.failing += 1
        if len(result.examples) < examples:
            found = json_errors(fields, schema)
            result.examples.append({"case_id": str(case_id), "errors": {
                ("fields" if key == "non_field_errors" else f"fields.{key}"): messages
                for key, messages in found.items()}})
    return result
