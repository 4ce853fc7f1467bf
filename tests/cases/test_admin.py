"""Case admin: changelist (pinned query count, dynamic-field filter, search), bulk actions with an
intermediate page, dynamic form fields from the queue schema, timeline inline, queue config editing."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.cases import services
from apps.cases.models import Case, CaseEvent, QueueConfig, Status
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import REFUND_SCHEMA, QueueFactory, make_case

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/cases/case/"


@pytest.fixture
def refunds():
    return QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)


@pytest.fixture
def ops(client):
    user = UserFactory(username="ops-admin", roles=["ops"])
    client.force_login(user)
    return client


def seed(queue, n, agent=None, **fields):
    return [make_case(queue=queue, fields={"order_id": f"O-{i:04d}", **fields}, subject=f"case {i}")
            for i in range(n)]


def test_changelist_query_count_is_constant(ops, refunds, django_assert_num_queries):
    agent = AgentFactory()
    cases = seed(refunds, 5, reason="late")
    services.case_assign(case=cases[0], agent=agent)
    # user, permissions (user + groups), filters (queues, agents, active schemas), the size
    # estimate, COUNT (exact below 100k rows), page; the session.
    with django_assert_num_queries(10):
        response = ops.get(CHANGELIST)
    assert response.status_code == 200
    assert response.content.decode().count('class="action-select"') == 5
    for case in seed(refunds, 45, reason="damaged"):
        services.case_assign(case=case, agent=agent)
    with django_assert_num_queries(10):
        response = ops.get(CHANGELIST)
    assert response.content.decode().count('class="action-select"') == 50
    # Filtered on core and dynamic fields: exact COUNT, no size estimate, nothing per row.
    with django_assert_num_queries(9):
        response = ops.get(CHANGELIST, {"df": 'reason:"damaged"', "queue__id__exact": refunds.pk,
                                        "status__exact": "assigned"})
    assert response.content.decode().count('class="action-select"') == 45


def test_dynamic_field_filter_uses_containment(ops, refunds):
    seed(refunds, 3, reason="late")
    seed(refunds, 2, reason="damaged")
    with CaptureQueriesContext(connection) as queries:
        response = ops.get(CHANGELIST, {"df": 'reason:"late"'})
    assert response.content.decode().count('class="action-select"') == 3
    assert any('"fields" @>' in q["sql"] for q in queries.captured_queries)
    page = ops.get(CHANGELIST).content.decode()
    assert "reason = damaged" in page  # the sidebar offers the schema's enum values
    assert ops.get(CHANGELIST, {"df": "order_id:O-0001"}).content.decode().count('class="action-select"') == 2


def test_search_by_uuid_and_refs(ops, refunds):
    case = make_case(queue=refunds, fields={"order_id": "A-1"}, merchant_ref="m-1005", subject="Broken jar")
    make_case(queue=refunds, fields={"order_id": "A-2"}, subject="Other")
    for term in (str(case.pk), "m-1005", "broken"):
        page = ops.get(CHANGELIST, {"q": term}).content.decode()
        assert page.count('class="action-select"') == 1 and "Broken jar" in page


def test_bulk_assign_has_an_intermediate_page(ops, refunds):
    cases = seed(refunds, 3)
    agent = AgentFactory(display_name="Agent Zed")
    data = {"action": "assign_to_agent", "_selected_action": [str(c.pk) for c in cases[:2]], "index": 0}
    page = ops.post(CHANGELIST, data)
    assert page.status_code == 200 and b'name="apply"' in page.content and b"Agent Zed" in page.content
    assert not Case.objects.filter(assigned_agent=agent).exists()
    done = ops.post(CHANGELIST, {**data, "apply": "Apply", "agent": agent.pk}, follow=True)
    assert b"2 case(s) done" in done.content
    assert set(Case.objects.filter(assigned_agent=agent)) == set(cases[:2])
    assert CaseEvent.objects.filter(kind="assigned").count() == 2


def test_bulk_status_change_reports_illegal_transitions(ops, refunds):
    cases = seed(refunds, 2)
    services.case_transition(case=cases[1], to_status=Status.CLOSED)
    data = {"action": "change_status", "_selected_action": [str(c.pk) for c in cases], "index": 0,
            "apply": "Apply", "status": "resolved", "note": "bulk"}
    response = ops.post(CHANGELIST, data, follow=True)
    assert b"1 case(s) done" in response.content and b"cannot move from" in response.content
    assert Case.objects.get(pk=cases[0].pk).status == Status.RESOLVED
    assert Case.objects.get(pk=cases[1].pk).status == Status.CLOSED


def test_bulk_transfer_to_queue_and_legacy_round_trip(ops, refunds):
    general = QueueFactory(slug="general")
    [case] = seed(refunds, 1)
    base = {"_selected_action": [str(case.pk)], "index": 0, "apply": "Apply"}
    ops.post(CHANGELIST, {**base, "action": "transfer_to_queue", "queue": general.pk, "reason": "x"})
    case.refresh_from_db()
    assert case.queue == general
    ops.post(CHANGELIST, {**base, "action": "transfer_to_legacy", "legacy_ref": "CRM-9"})
    case.refresh_from_db()
    assert case.location == "legacy"
    ops.post(CHANGELIST, {"_selected_action": [str(case.pk)], "index": 0,
                          "action": "transfer_back_from_legacy"})
    case.refresh_from_db()
    assert case.location == "casehub"
    assert list(CaseEvent.objects.filter(case=case).values_list("kind", flat=True).order_by("id")) == [
        "created", "transferred", "legacy_transfer", "legacy_transfer"]


def test_change_form_renders_schema_fields_and_validates(ops):
    open_schema = {k: v for k, v in REFUND_SCHEMA.items() if k != "additionalProperties"}
    queue = QueueFactory(slug="refunds-open", config__fields_schema=open_schema)
    case = make_case(queue=queue, fields={"order_id": "A-100", "reason": "late", "legacy_note": "kept"})
    url = f"{CHANGELIST}{case.pk}/change/"
    page = ops.get(url).content.decode()
    assert 'name="df_order_id"' in page and 'value="A-100"' in page
    assert '<select name="df_reason"' in page and '<option value="damaged">' in page
    assert 'name="df_items_missing"' in page and 'type="number"' in page
    assert '<select name="df_vip"' in page and 'type="date"' in page
    assert 'name="transition_to"' in page and "timeline" in page.lower()

    base = {"subject": "s", "priority": 2, "channel": "web", "merchant_ref": "", "customer_ref": "",
            "delivery_ref": "", "df_order_id": "A-100", "df_reason": "late", "df_vip": "unknown",
            "transition_to": "", "transition_note": "",
            "events-TOTAL_FORMS": 1, "events-INITIAL_FORMS": 1, "events-MIN_NUM_FORMS": 0,
            "events-MAX_NUM_FORMS": 0}
    bad = ops.post(url, {**base, "df_order_id": "A", "df_order_total": "-3"})
    assert bad.status_code == 200
    errors = bad.context["adminform"].form.errors
    assert "df_order_id" in errors and "df_order_total" in errors
    good = ops.post(url, {**base, "df_reason": "damaged", "df_order_total": "12.5", "df_vip": "true",
                          "transition_to": "in_progress", "transition_note": "checking"})
    assert good.status_code == 302, good.context and good.context["adminform"].form.errors
    case.refresh_from_db()
    assert case.fields == {"order_id": "A-100", "reason": "damaged", "order_total": 12.5, "vip": True,
                           "legacy_note": "kept"}
    assert case.subject == "s" and case.status == Status.IN_PROGRESS
    changed = [e.data["field"] for e in CaseEvent.objects.filter(case=case, kind="field_changed")]
    assert changed == ["subject", "fields.order_total", "fields.reason", "fields.vip"]
    assert CaseEvent.objects.filter(case=case, kind="note", data__body="checking").exists()


def test_add_case_picks_queue_then_uses_its_schema(ops, refunds):
    picker = ops.get(f"{CHANGELIST}add/").content.decode()
    assert f"?queue={refunds.pk}" in picker
    url = f"{CHANGELIST}add/?queue={refunds.pk}"
    assert b'name="df_order_id"' in ops.get(url).content
    data = {"queue": refunds.pk, "subject": "new one", "priority": 3, "channel": "email",
            "merchant_ref": "m-1001", "customer_ref": "", "delivery_ref": "", "df_order_id": "Z-1",
            "events-TOTAL_FORMS": 0, "events-INITIAL_FORMS": 0, "events-MIN_NUM_FORMS": 0,
            "events-MAX_NUM_FORMS": 0}
    response = ops.post(url, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    case = Case.objects.get(subject="new one")
    assert case.fields == {"order_id": "Z-1"} and case.priority == 3
    assert CaseEvent.objects.get(case=case).kind == "created"
    assert ops.post(url, {**data, "df_order_id": ""}).status_code == 200  # required by the schema


def test_queue_config_editor_saves_a_validated_draft_and_only_ops_publish(client, refunds):
    editor = UserFactory(username="editor-1", roles=["queue-config-editor"])
    client.force_login(editor)
    add = f"/admin/cases/queueconfig/add/?queue={refunds.pk}"
    page = client.get(add)
    assert page.status_code == 200 and b"order_total" in page.content  # prefilled from the active one
    data = {"queue": refunds.pk, "initial_status": "new", "sla": "{}", "routing": '{"skills": ["refunds"]}',
            "targeting": "{}", "fields_schema": '{"type": "object", "properties": {"x": {"type": "bogus"}}}',
            "transitions": '{"new": ["vanished"]}'}
    bad = client.post(add, data)
    assert bad.status_code == 200
    errors = bad.context["adminform"].form.errors
    assert "fields_schema" in errors and "transitions" in errors
    good = {**data, "fields_schema": '{"type": "object"}',
            "transitions": '{"new": ["resolved"], "resolved": []}'}
    assert client.post(add, good).status_code == 302
    draft = QueueConfig.objects.get(queue=refunds, version=2)
    assert (draft.state, draft.is_active, draft.created_by) == ("draft", False, editor)
    assert QueueConfig.objects.get(queue=refunds, is_active=True).version == 1  # the editor did not publish
    ops = UserFactory(username="ops-1", roles=["ops"])
    assert not editor.has_perm("cases.publish_queueconfig") and ops.has_perm("cases.publish_queueconfig")
    client.force_login(ops)
    assert client.post(add, good).status_code == 302  # ops' save publishes at once
    active = QueueConfig.objects.get(queue=refunds, is_active=True)
    assert active.version == 3 and active.routing == {"skills": ["refunds"]} and active.published_by == ops
    assert QueueConfig.objects.filter(queue=refunds).count() == 3
    assert client.get("/admin/cases/queue/").status_code == 200


def test_ops_rolls_a_queue_back_to_an_earlier_config_version(ops, refunds):
    first = QueueConfig.objects.get(queue=refunds)
    services.queue_config_publish(queue=refunds, fields_schema={"type": "object"},
                                  transitions={"new": ["resolved"], "resolved": []})
    assert ops.get(f"/admin/cases/queueconfig/{first.pk}/change/").status_code == 200  # view only
    response = ops.post("/admin/cases/queueconfig/", {"action": "rollback_version", "index": 0,
                                                      "_selected_action": [first.pk]}, follow=True)
    assert b"version 3 is active, with the content of version 1" in response.content
    # History is never rewritten: the rollback is a new version with the old content.
    active = QueueConfig.objects.get(queue=refunds, is_active=True)
    assert active.version == 3 and active.fields_schema == first.fields_schema
    assert active.transitions == first.transitions
    page = ops.get("/admin/cases/queue/").content.decode()
    assert f"/admin/cases/queueconfig/queue/{refunds.pk}/editor/" in page


def test_unfiltered_changelist_counts_big_tables_from_the_estimate(refunds):
    from apps.cases.admin import EstimatedCountPaginator

    seed(refunds, 3, reason="late")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE cases_case")
    assert EstimatedCountPaginator(Case.objects.all(), 50).count == 3  # small: exact
    EstimatedCountPaginator.EXACT_BELOW = 0
    try:
        with connection.cursor() as cursor:
            cursor.execute("UPDATE pg_class SET reltuples = 2000000 WHERE oid = 'cases_case'::regclass")
        assert EstimatedCountPaginator(Case.objects.all(), 50).count == 2_000_000
        filtered = Case.objects.filter(fields__contains={"reason": "late"})
        assert EstimatedCountPaginator(filtered, 50).count == 3  # a filtered list is counted exactly
    finally:
        EstimatedCountPaginator.EXACT_BELOW = 100_000


def _change_data(**extra):
    return {"subject": "s", "priority": 2, "channel": "web", "merchant_ref": "", "customer_ref": "",
            "delivery_ref": "", "df_order_id": "A-100", "transition_to": "", "transition_note": "",
            "events-TOTAL_FORMS": 1, "events-INITIAL_FORMS": 1, "events-MIN_NUM_FORMS": 0,
            "events-MAX_NUM_FORMS": 0, **extra}


def test_change_form_refusals_are_clear_errors_not_server_errors(ops, refunds, monkeypatch):
    from apps.core.errors import Conflict

    case = make_case(queue=refunds, fields={"order_id": "A-100"})
    url = f"{CHANGELIST}{case.pk}/change/"
    # A stale form: another agent closed the case after this page was loaded.
    services.case_transition(case=case, to_status=Status.CLOSED)
    stale = ops.post(url, _change_data(transition_to="in_progress"))
    assert stale.status_code == 200
    assert stale.context["adminform"].form.errors["transition_to"] == [
        "A case in queue 'refunds' cannot move from 'closed' to 'in_progress'. Allowed from 'closed': none."]

    other = make_case(queue=refunds, fields={"order_id": "A-200"})
    services.case_legacy_transfer_out(case=other, legacy_ref="CRM-1")
    frozen = ops.post(f"{CHANGELIST}{other.pk}/change/", _change_data(subject="edited"))
    assert frozen.status_code == 200 and "transfer it back first" in frozen.content.decode()
    assert Case.objects.get(pk=other.pk).subject == ""

    # A rule that only fails while writing: the whole save rolls back, the agent gets a message.
    fresh = make_case(queue=refunds, fields={"order_id": "A-300"})

    def conflict(**kwargs):
        raise Conflict("The case changed meanwhile.", errors={"status": ["Reload the case."]})

    monkeypatch.setattr(services, "case_transition", conflict)
    response = ops.post(f"{CHANGELIST}{fresh.pk}/change/", _change_data(subject="edited",
                                                                         transition_to="resolved"))
    assert response.status_code == 302 and response.url.endswith(f"{fresh.pk}/change/")
    page = ops.get(response.url).content.decode()
    assert "Nothing was saved. The case changed meanwhile. status: Reload the case." in page
    assert Case.objects.get(pk=fresh.pk).subject == ""
    assert list(CaseEvent.objects.filter(case=fresh).values_list("kind", flat=True)) == ["created"]
