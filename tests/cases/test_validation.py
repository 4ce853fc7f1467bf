"""Validation rules, each decided in one place: the queue-config JSON Schema with its few
cross-field checks (errors keyed by field), the core-attribute rules every case write path
shares, and the legacy export's format."""

import json

import pytest
from django.core.management import call_command

from apps.cases import services
from apps.cases.legacy import count_rows, legacy_format
from apps.cases.models import Case, CaseEvent, QueueConfig, case_core_errors
from apps.core.errors import ApplicationError
from tests.factories.cases import STANDARD_TRANSITIONS, QueueFactory, make_case

VALID = {"fields_schema": {"type": "object"}, "transitions": STANDARD_TRANSITIONS}
SKILLS = "'skills' must be a list of distinct skill names (up to 50 characters each)."
PROPERTY_TYPE = "Property 'when': type must be one of string, integer, number, boolean."
PRIORITY = "An integer from 1 to 4."
CHANNEL = "Unknown channel 'fax'; one of chat, phone, email, proactive, fraud_review, web."


def errors_of(**overrides):
    return services.queue_config_errors(**{**VALID, **overrides})


def unexpected(key):
    return f"Additional properties are not allowed ('{key}' was unexpected)"


def test_a_complete_valid_config_has_no_errors():
    assert errors_of(
        fields_schema={"type": "object", "required": ["order_id"], "additionalProperties": False,
                       "properties": {"order_id": {"type": "string", "minLength": 3},
                                      "vip": {"type": "boolean"}, "total": {"type": "number"}}},
        sla={"first_response_minutes": 30, "resolution_minutes": 600},
        routing={"skills": ["refunds", "english"], "priority_weights": {"4": 10, "1": 0.5}},
        targeting_rules={"signal_types": ["late_delivery"], "priority": 3,
                         "conditions": [{"path": "order.minutes_late", "op": "gte", "value": 30},
                                        {"path": "carrier", "op": "in", "value": ["bike", "car"]},
                                        {"path": "eta", "op": "exists"}],
                         "experiment": {"name": "late-2026", "treatment_percent": 12.5}},
    ) == {}
    assert errors_of(fields_schema={}, sla={}, routing={}, targeting_rules={}) == {}


@pytest.mark.parametrize(("overrides", "key", "message"), [
    # Python's bool is an int; JSON Schema's integer and number are not booleans.
    ({"sla": {"first_response_minutes": True}}, "sla",
     "'first_response_minutes' must be a positive integer."),
    ({"targeting_rules": {"priority": True}}, "targeting.priority", PRIORITY),
    ({"targeting_rules": {"experiment": {"name": "x", "treatment_percent": True}}},
     "targeting.experiment.treatment_percent", "A number from 0 to 100."),
    ({"routing": {"priority_weights": {"4": True}}}, "routing",
     "'priority_weights' must map priorities \"1\" to \"4\" to weights of 0 or more."),
    # Numbers out of range or not whole.
    ({"sla": {"resolution_minutes": 0}}, "sla", "'resolution_minutes' must be a positive integer."),
    ({"sla": {"resolution_minutes": 90.5}}, "sla", "'resolution_minutes' must be a positive integer."),
    ({"targeting_rules": {"priority": 5}}, "targeting.priority", PRIORITY),
    ({"targeting_rules": {"experiment": {"name": "x", "treatment_percent": 101}}},
     "targeting.experiment.treatment_percent", "A number from 0 to 100."),
    # Skill names are strings an agent can have.
    ({"routing": {"skills": [1]}}, "routing", SKILLS),
    ({"routing": {"skills": "refunds"}}, "routing", SKILLS),
    ({"routing": {"skills": ["refunds", "refunds"]}}, "routing", SKILLS),
    ({"routing": {"skills": ["x" * 51]}}, "routing", SKILLS),
    # Statuses come from Status.
    ({"transitions": {**STANDARD_TRANSITIONS, "limbo": []}}, "transitions", "Unknown status 'limbo'."),
    ({"transitions": {**STANDARD_TRANSITIONS, "new": ["resolved", "teleported"]}}, "transitions",
     "'new' -> unknown status 'teleported'."),
    ({"transitions": {**STANDARD_TRANSITIONS, "new": ["resolved", True]}}, "transitions",
     "'new' -> unknown status 'True'."),
    ({"transitions": {**STANDARD_TRANSITIONS, "resolved": "closed"}}, "transitions",
     "'resolved' must map to a list of distinct statuses."),
    ({"transitions": {}}, "transitions",
     "Must be an object mapping a status to the list of statuses it may move to."),
    ({"initial_status": "limbo"}, "initial_status", "Unknown status 'limbo'."),
    # A key nothing reads is a typo that would silently do nothing.
    ({"sla": {"first_reponse_minutes": 30}}, "sla", unexpected("first_reponse_minutes")),
    ({"routing": {"skill": ["refunds"]}}, "routing", unexpected("skill")),
    ({"targeting_rules": {"signal_types": ["late"], "prioritty": 3}}, "targeting", unexpected("prioritty")),
    ({"targeting_rules": {"conditions": [{"path": "a", "op": "eq", "value": 1, "vaule": 2}]}},
     "targeting.conditions.0", unexpected("vaule")),
    ({"targeting_rules": {"experiment": {"name": "x", "treatment": 50}}}, "targeting.experiment",
     unexpected("treatment")),
    # Targeting as targeting.py reads it.
    ({"targeting_rules": {"signal_types": ["late delivery!"]}}, "targeting.signal_types.0",
     "Must be a list of signal type names (letters, digits, '-' and '_')."),
    ({"targeting_rules": {"conditions": [{"path": "a", "op": "like"}]}}, "targeting.conditions.0.op",
     "Unknown operator; use one of eq, ne, gt, gte, lt, lte, in, exists."),
    ({"targeting_rules": {"conditions": [{"path": "a", "op": "in", "value": "bike"}]}},
     "targeting.conditions.0.value", "'in' needs a list."),
    ({"targeting_rules": {"conditions": [{"path": "a", "op": "exists", "value": "yes"}]}},
     "targeting.conditions.0.value", "'exists' takes true or false."),
    ({"targeting_rules": {"conditions": [{"op": "eq", "value": 1}]}}, "targeting.conditions.0.path",
     "This field is required."),
    ({"targeting_rules": {"conditions": [{"path": "a..b", "op": "eq", "value": 1}]}},
     "targeting.conditions.0.path", "Needs a non-empty 'path' (dotted, e.g. 'order.total')."),
    ({"targeting_rules": {"experiment": {"treatment_percent": 50}}}, "targeting.experiment.name",
     "Needs a 'name'."),
    ({"routing": {"priority_weights": {"urgent": 10}}}, "routing",
     "'priority_weights' must map priorities \"1\" to \"4\" to weights of 0 or more."),
    ({"targeting_rules": ["late_delivery"]}, "targeting", "Must be an object."),
    # The dynamic fields' schema: an object of fields of the types the admin can render.
    ({"fields_schema": {"type": "object", "properties": {"when": {"type": "array"}}}}, "fields_schema",
     PROPERTY_TYPE),
    ({"fields_schema": {"type": "object", "properties": {"when": {"format": "date"}}}}, "fields_schema",
     PROPERTY_TYPE),
    ({"fields_schema": {"type": "string"}}, "fields_schema",
     "The schema of dynamic fields must describe an object."),
    ({"fields_schema": ["order_id"]}, "fields_schema", "Must be a JSON object (a JSON Schema)."),
])
def test_each_rule_is_refused_under_its_field_with_one_message(overrides, key, message):
    assert errors_of(**overrides) == {key: [message]}


def test_cross_field_checks_the_schema_cannot_express():
    errors = errors_of(fields_schema={"type": "object", "properties": {"x": {"type": "nope"}}})
    assert list(errors) == ["fields_schema"]
    assert errors["fields_schema"][0].startswith("Not a valid JSON Schema")
    simple = {"new": ["resolved"], "resolved": []}
    assert errors_of(transitions=simple) == {}
    assert errors_of(transitions=simple, initial_status="resolved") == {
        "transitions": ["The initial status 'resolved' has no outgoing transitions."]}
    assert errors_of(transitions={"new": ["resolved"]}, initial_status="closed") == {
        "transitions": ["The initial status 'closed' has no outgoing transitions."]}


@pytest.mark.django_db
def test_publishing_a_refused_config_writes_nothing():
    queue = QueueFactory(slug="q", config=False)
    with pytest.raises(ApplicationError) as exc:
        services.queue_config_publish(queue=queue, **VALID, targeting_rules={"priority": True})
    assert exc.value.errors == {"targeting.priority": [PRIORITY]}
    assert not QueueConfig.objects.filter(queue=queue).exists()


@pytest.mark.django_db
def test_one_message_per_core_rule_on_every_write_path(tmp_path, capsys):
    queue = QueueFactory(slug="general")
    expected = {"priority": [PRIORITY], "channel": [CHANNEL]}
    assert case_core_errors(priority=True, channel="fax") == expected
    assert case_core_errors(priority=4, channel="chat", subject="anything", status="new") == {}

    with pytest.raises(ApplicationError) as created:
        make_case(queue=queue, priority=True, channel="fax")
    assert created.value.errors == expected
    case = make_case(queue=queue)
    with pytest.raises(ApplicationError) as updated:
        services.case_update(case=case, priority=True, channel="fax")
    assert updated.value.errors == expected
    with pytest.raises(ApplicationError) as bulk:
        services.cases_bulk_create(cases=[Case(queue=queue, priority=True, channel="fax")])
    assert bulk.value.errors == expected
    assert errors_of(targeting_rules={"priority": True}) == {"targeting.priority": expected["priority"]}

    export = tmp_path / "export.jsonl"
    export.write_text("".join(json.dumps(row) + "\n" for row in [
        {"legacy_id": "L-1", "queue": "general", "priority": True, "channel": "fax"},
        {"legacy_id": "L-2", "queue": "general", "priority": "2"},
        {"legacy_id": "L-3", "queue": "general", "priority": 2.5},
        {"legacy_id": "L-4", "queue": "general", "merchant_ref": "m" * 65},
    ]))
    call_command("import_legacy_cases", str(export), "--no-progress")
    out, err = capsys.readouterr()
    assert f"row 1: channel: {CHANNEL}; priority: {PRIORITY}" in err
    assert f"row 3: priority: {PRIORITY}" in err
    # Too long for the column: refused alone, with a reason, instead of failing the whole batch.
    assert "row 4: merchant_ref: Text of at most 64 characters." in err
    assert "4 rows: 1 imported, 0 already present, 3 with errors." in out
    assert Case.objects.get(legacy_id="L-2").priority == 2
    assert Case.objects.count() == 2 and CaseEvent.objects.count() == 2


@pytest.mark.parametrize(("name", "fmt", "expected"), [
    ("export.jsonl", None, "jsonl"), ("EXPORT.NDJSON", None, "jsonl"), ("export.json", None, "jsonl"),
    ("export.csv", None, "csv"), ("export.txt", None, "csv"), ("export.csv", "jsonl", "jsonl"),
    ("export.jsonl", "csv", "csv"),
])
def test_the_export_format_comes_from_the_suffix_unless_given(name, fmt, expected):
    assert legacy_format(name, fmt) == expected


def test_row_count_leaves_out_the_csv_header(tmp_path):
    lines = "legacy_id,queue\nA,general\n\nB,general\n"
    for name, fmt, rows in (("x.csv", None, 2), ("x.jsonl", None, 3), ("x.jsonl", "csv", 2)):
        path = tmp_path / name
        path.write_text(lines)
        assert count_rows(path, fmt=fmt) == rows

