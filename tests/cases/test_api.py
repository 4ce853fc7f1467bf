"""Cases API: list (pinned query count, dynamic-field filters), detail, create, transition, schema."""

import json

import pytest

from apps.cases import services
from apps.cases.models import Case, CaseEvent, Status
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import REFUND_SCHEMA, QueueFactory, make_case

pytestmark = pytest.mark.django_db
LIST = "/api/v1/cases/"


@pytest.fixture
def refunds():
    return QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)


@pytest.fixture
def agent_client(api_client):
    api_client.force_authenticate(UserFactory(username="agent-api", roles=["agent"]))
    return api_client


def make_refunds(queue, n, **fields):
    agent = AgentFactory()
    cases = []
    for i in range(n):
        case = make_case(queue=queue, fields={"order_id": f"O-{i:04d}", **fields}, merchant_ref="m-1001")
        if i % 2:
            services.case_assign(case=case, agent=agent)
        cases.append(case)
    return cases


def test_list_query_count_is_constant(agent_client, refunds, django_assert_num_queries):
    make_refunds(refunds, 3)
    # user permissions + group permissions, COUNT(*), the page (queue and agent joined in).
    with django_assert_num_queries(4):
        response = agent_client.get(LIST)
    assert response.status_code == 200 and response.json()["count"] == 3
    make_refunds(refunds, 27)
    agent_client.force_authenticate(UserFactory(username="agent-api2", roles=["agent"]))
    with django_assert_num_queries(4):
        response = agent_client.get(LIST)
    assert response.json()["count"] == 30
    row = response.json()["results"][0]
    assert row["queue"] == "refunds" and "fields" in row and "timeline" not in row
    # Filters (core and dynamic) add conditions, never queries.
    agent_client.force_authenticate(UserFactory(username="agent-api3", roles=["agent"]))
    with django_assert_num_queries(4):
        response = agent_client.get(LIST, {"queue": "refunds", "status": ["new", "assigned"],
                                           "field.order_id": "O-0001", "fields": '{"order_id": "O-0001"}'})
    assert response.json()["count"] == 2  # O-0001 of both batches


def test_detail_query_count_is_constant(agent_client, refunds, django_assert_num_queries):
    case = make_case(queue=refunds, fields={"order_id": "A-100"})
    services.case_add_note(case=case, body="one")
    # user permissions + group permissions, the case (queue and agent joined in), its timeline.
    with django_assert_num_queries(4):
        response = agent_client.get(f"{LIST}{case.pk}/")
    assert len(response.json()["timeline"]) == 2
    for n in range(20):
        services.case_add_note(case=case, body=f"note {n}", actor=UserFactory())
    agent_client.force_authenticate(UserFactory(username="agent-api4", roles=["agent"]))
    with django_assert_num_queries(4):
        response = agent_client.get(f"{LIST}{case.pk}/")
    assert len(response.json()["timeline"]) == 22 and response.json()["timeline"][-1]["actor"]


def test_dynamic_field_filters(agent_client, refunds):
    make_refunds(refunds, 3, reason="late", order_total=50)
    make_refunds(refunds, 2, reason="damaged", order_total=150, vip=True)
    special = make_case(queue=refunds, fields={"order_id": "X-9", "order_total": 120, "items_missing": 2})

    def ids(query):
        response = agent_client.get(LIST, query)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert len(ids({"field.reason": "late"})) == 3
    assert len(ids({"field.vip": "true"})) == 2
    assert ids({"field.order_total": "120"}) == {str(special.pk)}  # "120" matches the number 120
    assert ids({"field.order_id": "X-9"}) == {str(special.pk)}
    assert len(ids({"field.order_total__gt": "100"})) == 3
    assert len(ids({"field.order_total__gt": "100", "field.reason": "damaged"})) == 2
    assert ids({"fields": json.dumps({"items_missing": 2})}) == {str(special.pk)}
    assert len(ids({"fields": json.dumps({"reason": "damaged", "vip": True}), "queue": "refunds"})) == 2
    assert ids({"queue": "refunds", "status": ["assigned"]}) and not ids({"queue": "other"})

    bad = agent_client.get(LIST, {"fields": "[1, 2]"})
    assert bad.status_code == 400 and "fields" in bad.json()
    bad = agent_client.get(LIST, {"field.order_total__gt": "lots"})
    assert bad.status_code == 400 and "field.order_total__gt" in bad.json()
    for key in ("field.bad-name", "field.order_total__contains", "field.a__b__gt"):
        assert agent_client.get(LIST, {key: "1"}).status_code == 400


def test_dynamic_field_filter_uses_the_gin_index(refunds):
    from apps.cases.api.filters import CaseFilterSet
    from apps.cases.selectors import case_list

    make_refunds(refunds, 3, reason="late")
    qs = CaseFilterSet(data={"field.reason": "late"}, queryset=case_list()).qs
    assert "@>" in str(qs.query)
    from django.db import connection

    with connection.cursor() as cursor:
        # A tiny table: take plain scans off the table so only index-backed plans remain.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        plan = qs.explain()
    assert "case_fields_gin" in plan


def test_detail_has_the_timeline(agent_client, refunds):
    case = make_case(queue=refunds, fields={"order_id": "A-100"})
    services.case_add_note(case=case, body="called the courier")
    response = agent_client.get(f"{LIST}{case.pk}/")
    assert response.status_code == 200
    assert [e["kind"] for e in response.json()["timeline"]] == ["created", "note"]
    assert response.json()["timeline"][1]["data"] == {"body": "called the courier"}


def test_create_validates_dynamic_fields(agent_client, refunds):
    response = agent_client.post(LIST, {"queue": "refunds", "fields": {"order_total": "ten"}}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["errors"]["fields.order_id"] == ["This field is required."]
    assert "fields.order_total" in body["errors"]
    assert not Case.objects.exists()

    response = agent_client.post(LIST, {"queue": "refunds", "fields": {"order_id": "A-1"}, "priority": 3,
                                        "merchant_ref": "m-1002"}, format="json")
    assert response.status_code == 201, response.content
    case = Case.objects.get(pk=response.json()["id"])
    assert case.source == "api" and case.priority == 3 and case.merchant_ref == "m-1002"
    assert response.json()["timeline"][0]["kind"] == "created"
    assert response.json()["timeline"][0]["actor"] == "agent-api"


def test_transition_endpoint(agent_client, refunds):
    case = make_case(queue=refunds, fields={"order_id": "A-1"})
    url = f"{LIST}{case.pk}/transition/"
    illegal = agent_client.post(url, {"status": "reopened"}, format="json")
    assert illegal.status_code == 400 and illegal.json()["code"] == "illegal_transition"
    assert "status" in illegal.json()["errors"]
    ok = agent_client.post(url, {"status": "resolved", "note": "done"}, format="json")
    assert ok.status_code == 200 and ok.json()["status"] == Status.RESOLVED
    assert [e["kind"] for e in ok.json()["timeline"]][-2:] == ["status_changed", "note"]
    assert CaseEvent.objects.filter(case=case).count() == 3


def test_api_requires_case_permissions(api_client, refunds):
    case = make_case(queue=refunds, fields={"order_id": "A-1"})
    assert api_client.get(LIST).status_code in (401, 403)
    api_client.force_authenticate(UserFactory(username="merchant-x", roles=["merchant"]))
    assert api_client.get(LIST).status_code == 403
    editor = UserFactory(username="editor-x", roles=["queue-config-editor"])
    api_client.force_authenticate(editor)
    assert api_client.post(f"{LIST}{case.pk}/transition/", {"status": "resolved"}).status_code == 403


def test_openapi_schema_documents_the_cases_api(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    text = schema.content.decode()
    assert "/api/v1/cases/" in text and "/api/v1/cases/{id}/transition/" in text
    assert "/api/v1/signals/" in text and "field.{name}__{op}" in text
    assert client.get("/api/docs/").status_code == 200


def test_case_list_for_merchant_is_scoped(refunds):
    from apps.cases.selectors import case_list_for_merchant

    mine = make_case(queue=refunds, fields={"order_id": "M-1"}, merchant_ref="m-1001")
    make_case(queue=refunds, fields={"order_id": "M-2"}, merchant_ref="m-1002")
    assert list(case_list_for_merchant("m-1001")) == [mine]


def test_notes_and_reversible_legacy_transfer(agent_client, refunds):
    case = make_case(queue=refunds, fields={"order_id": "A-1"})
    base = f"{LIST}{case.pk}/"
    note = agent_client.post(f"{base}notes/", {"body": "customer called back"}, format="json")
    assert note.status_code == 201 and note.json()["timeline"][-1]["data"] == {"body": "customer called back"}
    assert agent_client.post(f"{base}notes/", {"body": ""}, format="json").status_code == 400

    out = agent_client.post(f"{base}legacy-transfer/", {"direction": "out", "legacy_ref": "CRM-5"},
                            format="json")
    assert out.status_code == 200 and out.json()["location"] == "legacy"
    frozen = agent_client.post(f"{base}transition/", {"status": "resolved"}, format="json")
    assert frozen.status_code == 409 and frozen.json()["code"] == "in_legacy"
    again = agent_client.post(f"{base}legacy-transfer/", {"direction": "in"}, format="json")
    assert again.status_code == 200 and again.json()["location"] == "casehub"
    assert agent_client.post(f"{base}legacy-transfer/", {"direction": "in"}, format="json").status_code == 409
    kinds = [e["kind"] for e in again.json()["timeline"]]
    assert kinds == ["created", "note", "legacy_transfer", "legacy_transfer"]
