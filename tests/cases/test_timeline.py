"""Timeline completeness: every change to a case has its CaseEvent, written by the same
PostgreSQL transaction as the change, and replaying the timeline gives the case as it is.

These tests run without the test-wide wrapping transaction (`transaction=True`), so each
service call commits on its own and `xmin` (the id of the transaction that wrote a row
version) tells which transaction wrote the case row and which wrote each event.
"""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.db import connection

from apps.cases import services
from apps.cases.models import Case, CaseEvent, Location, Status
from apps.core.errors import ApplicationError
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import REFUND_SCHEMA, QueueFactory

pytestmark = pytest.mark.django_db(transaction=True)

CORE = services.CORE_EDITABLE


def replay(events: list[CaseEvent]) -> dict:
    """The case's state rebuilt from its timeline alone."""
    state: dict = {}
    for event in events:
        data = event.data
        if event.kind == "created":
            state = {"queue": data["queue"], "status": data["status"], "fields": dict(data["fields"]),
                     "agent": None, "location": Location.CASEHUB, **{name: data[name] for name in CORE}}
        elif event.kind == "field_changed":
            name = data["field"]
            if name.startswith("fields."):
                key = name.removeprefix("fields.")
                assert state["fields"].get(key) == data["old"]
                if data["new"] is None:
                    state["fields"].pop(key)
                else:
                    state["fields"][key] = data["new"]
            else:
                assert state[name] == data["old"]
                state[name] = data["new"]
        elif event.kind == "status_changed":
            assert state["status"] == data["from"]
            state["status"] = data["to"]
        elif event.kind in ("assigned", "offered", "offer_declined", "offer_expired"):
            # An offer holds the case for its agent; declined or expired, it lets go.
            assert state["agent"] == data["from"]
            state["agent"] = data["to"]
        elif event.kind == "offer_accepted":
            assert state["agent"] == data["agent"]
        elif event.kind == "transferred":
            assert state["queue"] == data["from"] and state["agent"] == data["unassigned"]
            state["queue"], state["agent"] = data["to"], None
        elif event.kind == "legacy_transfer":
            state["location"] = Location.LEGACY if data["direction"] == "out" else Location.CASEHUB
        else:
            assert event.kind in ("note", "message"), event.kind
    return state


def snapshot(case: Case) -> dict:
    case = Case.objects.select_related("queue").get(pk=case.pk)
    return {"queue": case.queue.slug, "status": case.status, "fields": case.fields,
            "agent": case.assigned_agent_id, "location": case.location,
            **{name: getattr(case, name) for name in CORE}}


def xmin_of_case(case_id) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text::bigint FROM cases_case WHERE id = %s", [case_id])
        return cursor.fetchone()[0]


def events_after(case_id, last_id: int) -> list[tuple[str, int]]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT kind, xmin::text::bigint FROM cases_caseevent WHERE case_id = %s AND id > %s "
                       "ORDER BY id", [case_id, last_id])
        return cursor.fetchall()


def last_event_id() -> int:
    return CaseEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0


def assert_complete(case: Case) -> None:
    assert replay(list(CaseEvent.objects.filter(case_id=case.pk).order_by("id"))) == snapshot(case)


def test_every_change_has_its_event_in_the_same_transaction():
    refunds = QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)
    general = QueueFactory(slug="general")
    user = UserFactory(username="timeline-ops")
    ann, bob = AgentFactory(), AgentFactory()
    case = services.case_create(queue=refunds, fields={"order_id": "A-1", "reason": "late"}, subject="Late",
                                merchant_ref="m-1", actor=user)
    [(kind, xmin)] = events_after(case.pk, 0)
    assert kind == "created" and xmin == xmin_of_case(case.pk)
    assert_complete(case)

    # (operation, the events it must write, whether it rewrites the case row)
    steps = [
        (lambda: services.case_update(case=case, fields={"reason": "damaged", "vip": True}, priority=3,
                                      subject="Damaged", actor=user),
         ["field_changed"] * 4, True),
        (lambda: services.case_update(case=case, fields={"vip": None}, actor=user), ["field_changed"], True),
        (lambda: services.case_assign(case=case, agent=ann, actor=user),
         ["assigned", "status_changed"], True),
        (lambda: services.case_add_message(case=case, body="On it", actor=user), ["message"], True),
        (lambda: services.case_add_message(case=case, body="Still on it", actor=user), ["message"], False),
        (lambda: services.case_add_note(case=case, body="courier called", actor=user), ["note"], False),
        (lambda: services.case_transition(case=case, to_status=Status.IN_PROGRESS, actor=user),
         ["status_changed"], True),
        (lambda: services.case_assign(case=case, agent=bob, actor=user), ["assigned"], True),
        (lambda: services.case_transfer(case=case, queue=general, reason="wrong queue", actor=user),
         ["transferred"], True),
        (lambda: services.case_legacy_transfer_out(case=case, legacy_ref="CRM-1", actor=user),
         ["legacy_transfer"], True),
        (lambda: services.case_legacy_transfer_back(case=case, actor=user), ["legacy_transfer"], True),
        (lambda: services.case_assign(case=case, agent=ann, actor=user), ["assigned"], True),
        (lambda: services.case_transition(case=case, to_status=Status.RESOLVED, note="refunded", actor=user),
         ["status_changed", "note"], True),
        (lambda: services.case_transition(case=case, to_status=Status.REOPENED, actor=user),
         ["status_changed"], True),
        (lambda: services.cases_bulk_apply(case_ids=[case.pk], operation=lambda c: services.case_assign(
            case=c, agent=None, actor=user)), ["assigned"], True),
    ]
    for number, (operation, kinds, rewrites_row) in enumerate(steps, start=1):
        before = last_event_id()
        operation()
        written = events_after(case.pk, before)
        assert [kind for kind, _ in written] == kinds, f"step {number}"
        xmins = {xmin for _, xmin in written}
        assert len(xmins) == 1, f"step {number}: events of one change written by several transactions"
        if rewrites_row:
            assert xmins == {xmin_of_case(case.pk)}, f"step {number}: event and change in two transactions"
        assert_complete(case)

    case = Case.objects.get(pk=case.pk)
    assert case.first_assigned_at and case.first_response_at and case.resolved_at is None
    assert case.queue == general and case.status == Status.REOPENED and case.assigned_agent is None


def test_refused_changes_write_neither_the_change_nor_an_event():
    refunds = QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)
    strict = QueueFactory(slug="strict", config__fields_schema={
        "type": "object", "properties": {"ticket": {"type": "string"}}, "required": ["ticket"]})
    case = services.case_create(queue=refunds, fields={"order_id": "A-1"})
    before_row, before_events = xmin_of_case(case.pk), last_event_id()
    refused = [
        lambda: services.case_transition(case=case, to_status=Status.REOPENED),
        lambda: services.case_update(case=case, fields={"items_missing": "two"}, subject="x"),
        lambda: services.case_update(case=case, status=Status.CLOSED),
        lambda: services.case_transfer(case=case, queue=strict),
        lambda: services.case_add_note(case=case, body="  "),
    ]
    for operation in refused:
        with pytest.raises(ApplicationError):
            operation()
    assert xmin_of_case(case.pk) == before_row and last_event_id() == before_events
    assert_complete(case)


def test_cases_from_every_entry_point_start_with_a_complete_created_event(tmp_path):
    from django.contrib.auth.models import Permission

    queue = QueueFactory(slug="proactive", config__fields_schema={"type": "object", "properties": {
        "minutes_late": {"type": "integer"}, "order_id": {"type": "string"}}},
        config__targeting_rules={"signal_types": ["late_delivery"], "priority": 3})
    ops = UserFactory(username="signals")
    ops.user_permissions.add(Permission.objects.get(codename="ingest_signal"))
    from_signal = services.signal_ingest(signal_type="late_delivery", delivery_ref="d-1",
                                         payload={"minutes_late": 50}, actor=ops).case
    [bulk] = services.cases_bulk_create(cases=[Case(queue=queue, status=Status.NEW, subject="bulk",
                                                    fields={"order_id": "B-1"})])
    export = tmp_path / "export.jsonl"
    export.write_text(json.dumps({"legacy_id": "CRM-9", "queue": "proactive", "status": "resolved",
                                  "priority": 4, "subject": "old", "fields": {"order_id": "L-9"}}) + "\n")
    call_command("import_legacy_cases", str(export), "--no-progress")
    imported = Case.objects.get(legacy_id="CRM-9")
    for case in (from_signal, bulk, imported):
        [(kind, xmin)] = events_after(case.pk, 0)
        assert kind == "created" and xmin == xmin_of_case(case.pk)
        assert_complete(case)
    assert snapshot(imported)["status"] == Status.RESOLVED and snapshot(imported)["priority"] == 4


def test_offers_replay_from_the_timeline_with_their_transaction():
    from datetime import timedelta

    from django.utils import timezone

    from apps.assignment import services as assignment
    from apps.assignment.models import Offer

    queue = QueueFactory()
    first = AgentFactory(queues=[queue], capacity=9)
    second = AgentFactory(queues=[queue], capacity=5)
    case = services.case_create(queue=queue, subject="offered around")
    assignment.assignment_batch_run()
    assignment.offer_decline(offer_id=Offer.objects.get(case=case, agent=first).pk, user=first.user)
    assignment.assignment_batch_run()
    assert replay(list(case.events.order_by("id"))) == snapshot(case)  # held by the second
    Offer.objects.filter(case=case, agent=second).update(created_at=timezone.now() - timedelta(minutes=2),
                                                         expires_at=timezone.now() - timedelta(minutes=1))
    assignment.offers_expire()
    assert replay(list(case.events.order_by("id"))) == snapshot(case)  # nobody: waits again
    third = AgentFactory(queues=[queue])
    assignment.assignment_batch_run()
    assignment.offer_accept(offer_id=Offer.objects.get(case=case, agent=third).pk, user=third.user)
    events = list(case.events.order_by("id"))
    assert [e.kind for e in events][1:] == ["offered", "offer_declined", "offered", "offer_expired",
                                            "offered",
                                            "offer_accepted", "status_changed"]
    assert replay(events) == snapshot(case) and snapshot(case)["agent"] == third.pk
    # Each step's events were written in the transaction that changed the case.
    last = events[-1]
    assert last.kind == "status_changed" and xmin_of_event(last.pk) == xmin_of_case(case.pk)


def xmin_of_event(event_id) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT xmin::text::bigint FROM cases_caseevent WHERE id = %s", [event_id])
        return cursor.fetchone()[0]
