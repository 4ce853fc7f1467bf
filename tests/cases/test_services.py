"""Case services: schema validation, transitions, timeline completeness and atomicity."""

import pytest
from django.db import DatabaseError, connection, transaction

from apps.cases import services
from apps.cases.models import Case, CaseEvent, EventKind, Location, QueueConfig, Status
from apps.core.errors import ApplicationError
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import REFUND_SCHEMA, STANDARD_TRANSITIONS, QueueFactory, make_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def refunds():
    return QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)


def kinds(case):
    return list(CaseEvent.objects.filter(case=case).order_by("id").values_list("kind", flat=True))


def test_create_writes_created_event_with_fields(refunds):
    user = UserFactory()
    case = make_case(queue=refunds, fields={"order_id": "A-100", "order_total": 12.5}, actor=user)
    event = CaseEvent.objects.get(case=case)
    assert event.kind == EventKind.CREATED and event.actor == user
    assert event.data["fields"] == {"order_id": "A-100", "order_total": 12.5}
    assert case.status == Status.NEW


def test_schema_validation_has_field_level_errors(refunds):
    with pytest.raises(ApplicationError) as exc:
        make_case(queue=refunds, fields={"order_total": -1, "reason": "bored", "color": "red"})
    errors = exc.value.errors
    assert errors["fields.order_id"] == ["This field is required."]
    assert "minimum" in errors["fields.order_total"][0]
    assert "is not one of" in errors["fields.reason"][0]
    assert "color" in errors["fields"][0]  # additionalProperties is a whole-object error
    assert not Case.objects.exists() and not CaseEvent.objects.exists()


def test_update_fields_records_old_and_new_per_field(refunds):
    case = make_case(queue=refunds, fields={"order_id": "A-100", "reason": "late"})
    services.case_update(case=case, fields={"reason": "damaged", "vip": True}, priority=3)
    events = list(CaseEvent.objects.filter(case=case, kind=EventKind.FIELD_CHANGED).order_by("id"))
    assert [(e.data["field"], e.data["old"], e.data["new"]) for e in events] == [
        ("priority", 2, 3), ("fields.reason", "late", "damaged"), ("fields.vip", None, True),
    ]
    case.refresh_from_db()
    assert case.fields == {"order_id": "A-100", "reason": "damaged", "vip": True}


def test_update_fields_invalid_changes_nothing(refunds):
    case = make_case(queue=refunds, fields={"order_id": "A-100"})
    with pytest.raises(ApplicationError) as exc:
        services.case_update(case=case, fields={"items_missing": "two"}, subject="changed")
    assert "fields.items_missing" in exc.value.errors
    case.refresh_from_db()
    assert case.subject == "" and kinds(case) == ["created"]


def test_illegal_transition_is_a_clear_error(refunds):
    case = make_case(queue=refunds, fields={"order_id": "A-100"})
    with pytest.raises(ApplicationError) as exc:
        services.case_transition(case=case, to_status=Status.REOPENED)
    assert exc.value.code == "illegal_transition"
    assert "cannot move from 'new' to 'reopened'" in exc.value.message
    assert exc.value.errors["status"] == ["Allowed from 'new': assigned, in_progress, resolved, closed."]
    case.refresh_from_db()
    assert case.status == Status.NEW and kinds(case) == ["created"]


def test_lifecycle_timestamps_and_timeline_is_complete(refunds):
    agent = AgentFactory()
    case = make_case(queue=refunds, fields={"order_id": "A-100"})
    services.case_assign(case=case, agent=agent)
    services.case_add_message(case=case, body="Hello, we are on it")
    services.case_transition(case=case, to_status=Status.IN_PROGRESS)
    services.case_transition(case=case, to_status=Status.RESOLVED, note="refunded")
    case.refresh_from_db()
    assert case.resolved_at and case.first_assigned_at and case.first_response_at
    services.case_transition(case=case, to_status=Status.REOPENED)
    case.refresh_from_db()
    assert case.resolved_at is None and case.status == Status.REOPENED
    assert kinds(case) == ["created", "assigned", "status_changed", "message", "status_changed",
                           "status_changed", "note", "status_changed"]
    changes = CaseEvent.objects.filter(case=case, kind="status_changed").order_by("id")
    statuses = [e.data["to"] for e in changes]
    assert statuses == ["assigned", "in_progress", "resolved", "reopened"]


def test_event_and_change_share_one_transaction(refunds):
    """If anything after the change fails, neither the change nor its event survive."""
    case = make_case(queue=refunds, fields={"order_id": "A-100"})
    with pytest.raises(RuntimeError), transaction.atomic():
        services.case_transition(case=case, to_status=Status.RESOLVED)
        assert kinds(case)[-1] == "status_changed"
        raise RuntimeError("boom")
    case.refresh_from_db()
    assert case.status == Status.NEW and kinds(case) == ["created"]


def test_events_are_append_only_in_the_database(refunds):
    case = make_case(queue=refunds, fields={"order_id": "A-100"})
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        CaseEvent.objects.filter(case=case).update(kind="note")


def test_transfer_validates_new_schema_and_unassigns(refunds):
    general = QueueFactory(slug="general")
    strict = QueueFactory(slug="strict", config__fields_schema={
        "type": "object", "properties": {"ticket": {"type": "string"}}, "required": ["ticket"]})
    case = make_case(queue=refunds, fields={"order_id": "A-100"})
    services.case_assign(case=case, agent=AgentFactory())
    with pytest.raises(ApplicationError) as exc:
        services.case_transfer(case=case, queue=strict)
    assert exc.value.errors == {"fields.ticket": ["This field is required."]}
    case = services.case_transfer(case=case, queue=general, reason="wrong queue")
    assert case.queue == general and case.assigned_agent is None
    event = CaseEvent.objects.get(case=case, kind="transferred")
    assert event.data["from"] == "refunds" and event.data["to"] == "general"
    assert case.status == Status.NEW  # back to waiting, in the new queue


def test_legacy_transfer_is_recorded_and_reversible(refunds):
    case = make_case(queue=refunds, fields={"order_id": "A-100"})
    services.case_legacy_transfer_out(case=case, legacy_ref="CRM-77")
    with pytest.raises(ApplicationError) as exc:
        services.case_transition(case=case, to_status=Status.RESOLVED)
    assert exc.value.code == "in_legacy"
    services.case_legacy_transfer_back(case=case)
    case.refresh_from_db()
    assert case.location == Location.CASEHUB
    services.case_transition(case=case, to_status=Status.RESOLVED)
    legacy = CaseEvent.objects.filter(case=case, kind="legacy_transfer").order_by("id")
    assert [(e.data["direction"], e.data.get("legacy_ref")) for e in legacy] == [
        ("out", "CRM-77"), ("in", None)]


def test_bulk_apply_keeps_good_cases_and_reports_bad_ones(refunds):
    good = make_case(queue=refunds, fields={"order_id": "A-1"})
    done = make_case(queue=refunds, fields={"order_id": "A-2"})
    services.case_transition(case=done, to_status=Status.CLOSED)
    result = services.cases_bulk_apply(
        case_ids=[good.pk, done.pk],
        operation=lambda c: services.case_transition(case=c, to_status=Status.RESOLVED))
    assert result.done == 1 and list(result.errors) == [str(done.pk)]
    good.refresh_from_db()
    assert good.status == Status.RESOLVED


def test_queue_config_validation_and_versions():
    queue = QueueFactory(slug="q", config=False)
    with pytest.raises(ApplicationError) as exc:
        services.queue_config_publish(
            queue=queue, fields_schema={"type": "object", "properties": {"x": {"type": "nope"}}},
            transitions={"new": ["teleported"], "limbo": []}, sla={"first_response_minutes": -5},
            targeting_rules={"signal_types": ["late"], "conditions": [{"path": "a", "op": "like"}]})
    errors = exc.value.errors
    assert errors["fields_schema"][0].startswith("Not a valid JSON Schema")
    assert "'new' -> unknown status 'teleported'." in errors["transitions"]
    assert "Unknown status 'limbo'." in errors["transitions"]
    assert "sla" in errors and "targeting.conditions.0.op" in errors
    first = services.queue_config_publish(queue=queue, fields_schema={"type": "object"},
                                          transitions=STANDARD_TRANSITIONS)
    second = services.queue_config_publish(queue=queue, fields_schema=REFUND_SCHEMA,
                                           transitions=STANDARD_TRANSITIONS)
    assert (first.version, second.version) == (1, 2)
    assert list(QueueConfig.objects.filter(queue=queue, is_active=True)) == [second]
    services.queue_config_activate(config=first)
    active = QueueConfig.objects.filter(queue=queue, is_active=True)
    assert list(active.values_list("version", flat=True)) == [1]


def test_one_active_config_is_a_database_constraint():
    from django.db import IntegrityError

    queue = QueueFactory(slug="q2")
    with pytest.raises(IntegrityError), transaction.atomic():
        QueueConfig.objects.create(queue=queue, version=9, is_active=True, transitions=STANDARD_TRANSITIONS)


def test_case_lock_is_taken_for_updates(refunds):
    """Changes lock the case row, so concurrent editors are serialised (old values are exact)."""
    case = make_case(queue=refunds, fields={"order_id": "A-100"})
    with transaction.atomic():
        services.case_update(case=case, subject="x")
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'tuple' OR mode = 'RowShareLock'")
            assert cursor.fetchone()[0] >= 1


def test_losing_the_agent_puts_an_assigned_case_back_in_waiting(refunds):
    general = QueueFactory(slug="general")
    agent = AgentFactory()
    case = make_case(queue=refunds, fields={"order_id": "A-1"})
    services.case_assign(case=case, agent=agent)
    case = services.case_assign(case=case, agent=None)
    assert case.status == Status.NEW and case.assigned_agent is None
    services.case_assign(case=case, agent=agent)
    case = services.case_transfer(case=case, queue=general)
    assert case.status == Status.NEW and case.assigned_agent is None
    moves = [(e.data["from"], e.data["to"], e.data.get("reason"))
             for e in CaseEvent.objects.filter(case=case, kind="status_changed").order_by("id")]
    assert moves == [("new", "assigned", None), ("assigned", "new", "unassigned"),
                     ("new", "assigned", None), ("assigned", "new", "transferred")]
    # An in-progress case keeps its status when unassigned: someone worked it already.
    services.case_assign(case=case, agent=agent)
    services.case_transition(case=case, to_status=Status.IN_PROGRESS)
    assert services.case_assign(case=case, agent=None).status == Status.IN_PROGRESS
