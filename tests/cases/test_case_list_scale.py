"""Case list under combined filters: no DISTINCT where no join repeats rows, a count capped at
`API_COUNT_CAP` with pages still reachable past it, and a pinned query count."""

from datetime import timedelta

import pytest
from django.db import connection
from django.http import QueryDict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.cases import services
from apps.cases.api.filters import CaseFilterSet
from apps.cases.models import Case, Status
from apps.cases.selectors import case_list
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import REFUND_SCHEMA, QueueFactory, make_case

pytestmark = pytest.mark.django_db
LIST = "/api/v1/cases/"
REASONS = ["late", "damaged", "missing_items"]


@pytest.fixture
def agent_client(api_client):
    api_client.force_authenticate(UserFactory(username="agent-scale", roles=["agent"]))
    return api_client


@pytest.fixture
def cases():
    """Twelve cases over two queues, three reasons and three statuses, one minute apart (newest
    last), so every combination of filters below has its own answer."""
    refunds = QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)
    other = QueueFactory(slug="other", config__fields_schema=REFUND_SCHEMA)
    agent = AgentFactory()
    start = timezone.now() - timedelta(hours=1)
    made = []
    for i in range(12):
        case = make_case(queue=refunds if i % 4 else other,
                         fields={"order_id": f"O-{i:03d}", "reason": REASONS[i % 3], "order_total": 10 * i})
        if i % 3 == 1:
            services.case_assign(case=case, agent=agent)
        elif i % 3 == 2:
            services.case_transition(case=case, to_status=Status.RESOLVED, note="")
        made.append(case)
    for i, case in enumerate(made):  # distinct, known creation times: the order is checked below
        Case.objects.filter(pk=case.pk).update(created_at=start + timedelta(minutes=i))
    return Case.objects.filter(pk__in=[c.pk for c in made]).order_by("-created_at")


def ids(response) -> list[str]:
    return [row["id"] for row in response.json()["results"]]


COMBINED = [
    {"status": ["new"], "field.reason": "late"},
    {"status": ["new", "assigned"], "field.reason": "damaged"},
    {"status": ["new", "assigned", "resolved"], "field.order_total__gte": "40", "queue": "refunds"},
    {"status": ["resolved"], "fields": '{"reason": "missing_items"}', "field.order_total__lt": "60"},
    {"status": ["assigned"], "field.reason": "late"},  # none: status and reason never meet
]


@pytest.mark.parametrize("params", COMBINED, ids=lambda p: "&".join(sorted(p)))
def test_combined_filters_give_the_same_cases_as_with_distinct(agent_client, cases, params):
    def expected(case) -> bool:
        total = case.fields["order_total"]
        return (case.status in params["status"]
                and params.get("field.reason", case.fields["reason"]) == case.fields["reason"]
                and ("fields" not in params or case.fields["reason"] == "missing_items")
                and params.get("queue", case.queue.slug) == case.queue.slug
                and total >= float(params.get("field.order_total__gte", "-inf"))
                and total < float(params.get("field.order_total__lt", "inf")))

    want = [str(case.pk) for case in cases if expected(case)]
    data = QueryDict(mutable=True)
    for key, value in params.items():
        data.setlist(key, value if isinstance(value, list) else [value])
    # What the list answered while the status filter added DISTINCT.
    with_distinct = CaseFilterSet(data=data, queryset=case_list().order_by("-created_at", "id")).qs.distinct()
    assert [str(pk) for pk in with_distinct.values_list("pk", flat=True)] == want

    response = agent_client.get(LIST, params)
    assert response.status_code == 200
    assert ids(response) == want  # same cases, newest first
    assert response.json()["count"] == len(want) and response.json()["count_capped"] is False


def test_status_and_field_filters_add_no_distinct(agent_client, cases):
    with CaptureQueriesContext(connection) as ctx:
        response = agent_client.get(LIST, {"status": ["new", "resolved"], "field.reason": "late",
                                           "field.order_total__gt": "0", "queue": "refunds"})
    assert response.status_code == 200 and response.json()["count"] == 3
    case_queries = [q["sql"] for q in ctx.captured_queries if "cases_case" in q["sql"]]
    assert len(case_queries) == 2  # the count and the page
    assert not [sql for sql in case_queries if "DISTINCT" in sql.upper()]
    count_sql = case_queries[0]
    # Bounded: the count reads at most cap + 1 rows, unordered.
    assert count_sql.startswith("SELECT COUNT(*)") and "LIMIT 1001" in count_sql
    assert "ORDER BY" not in count_sql


def test_count_stops_at_the_cap_and_next_still_leads_past_it(agent_client, cases, settings):
    settings.API_COUNT_CAP = 3
    newest_first = [str(c.pk) for c in cases if c.status in (Status.NEW, Status.ASSIGNED)]
    assert len(newest_first) == 8
    query = {"status": ["new", "assigned"], "page_size": 3}
    seen, page, url = [], 0, LIST
    while url:
        response = agent_client.get(url, query if page == 0 else None)
        assert response.status_code == 200
        body = response.json()
        page += 1
        assert (body["count"], body["count_capped"]) == (3, True)
        seen += ids(response)
        url = body["next"]
    assert page == 3 and seen == newest_first
    assert body["previous"] and "page=2" in body["previous"]
    # Past the last row: a 404 as before; the last page cannot be named without a full count.
    assert agent_client.get(LIST, {**query, "page": 4}).status_code == 404
    assert agent_client.get(LIST, {**query, "page": "last"}).status_code == 404
    assert agent_client.get(LIST, {**query, "page": 0}).status_code == 404

    # At or under the cap the count is exact and the paginator is Django's.
    response = agent_client.get(LIST, {"status": ["resolved"], "queue": "refunds", "page_size": 3})
    assert (response.json()["count"], response.json()["count_capped"]) == (3, False)
    assert response.json()["next"] is None
    response = agent_client.get(LIST, {"status": ["new"], "field.reason": "late", "queue": "refunds",
                                       "page": "last", "page_size": 1})
    assert response.status_code == 200 and response.json()["count"] == 3
    assert response.json()["next"] is None and response.json()["previous"]


@pytest.mark.parametrize("cap", [1000, 2], ids=["under-cap", "capped"])
def test_combined_list_query_count_is_pinned(api_client, cases, settings, cap, django_assert_num_queries):
    settings.API_COUNT_CAP = cap
    api_client.force_authenticate(UserFactory(username=f"agent-pinned-{cap}", roles=["agent"]))
    # user permissions + group permissions, the capped COUNT, the page (queue and agent joined in).
    with django_assert_num_queries(4):
        response = api_client.get(LIST, {"status": ["new", "assigned"], "field.reason": "late",
                                         "queue": "refunds"})
    assert response.status_code == 200
    assert response.json()["count_capped"] is (cap == 2)


def test_schema_documents_the_capped_count(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    listing = schema["paths"]["/api/v1/cases/"]["get"]["responses"]["200"]["content"]["application/json"]
    ref = listing["schema"]["$ref"].rsplit("/", 1)[-1]
    page = schema["components"]["schemas"][ref]
    assert page["properties"]["count_capped"]["type"] == "boolean"
    assert "count_capped" in page["required"] and "1000" in page["properties"]["count"]["description"]


def _counts(ctx) -> int:
    return sum(q["sql"].startswith("SELECT COUNT(*)") for q in ctx.captured_queries)


def test_over_the_cap_is_remembered_and_an_exact_count_is_not(agent_client, cases, settings, monkeypatch):
    settings.API_COUNT_CAP = 3
    broad = {"status": ["new", "assigned"]}  # 8 cases: over the cap
    narrow = {"status": ["resolved"], "queue": "refunds"}  # 3 cases: exact
    for query, counted in ((broad, [1, 0]), (narrow, [1, 1])):
        seen = []
        for _ in range(2):
            with CaptureQueriesContext(connection) as ctx:
                body = agent_client.get(LIST, query).json()
            seen.append(_counts(ctx))
            assert body["count"] == 3 and body["count_capped"] is (query is broad)
        assert seen == counted, query
    # Another filter is counted on its own, and a page past the first still reads its rows.
    with CaptureQueriesContext(connection) as ctx:
        body = agent_client.get(LIST, {**broad, "field.reason": "late"}).json()
    assert _counts(ctx) == 1
    second = agent_client.get(LIST, {**broad, "page_size": 3, "page": 2}).json()
    assert second["count_capped"] is True and len(second["results"]) == 3

    # With the cache unreachable the list still answers, counting every time.
    import redis
    from django.core.cache import cache

    def down(*args, **kwargs):
        raise redis.ConnectionError("cache down")

    monkeypatch.setattr(cache, "get", down)
    monkeypatch.setattr(cache, "set", down)
    with CaptureQueriesContext(connection) as ctx:
        body = agent_client.get(LIST, broad).json()
    assert _counts(ctx) == 1 and body["count_capped"] is True


def test_a_page_of_plain_rows_matches_the_serializer_on_model_instances(agent_client, cases):
    """The list reads CaseSerializer's columns as values (apps.core.api.rows): every case,
    assigned or not, resolved or not, with a legacy id and with text in many scripts, shows
    exactly what the serializer gives for the model instance."""
    from apps.cases.api.serializers import CaseSerializer

    first = cases[0]
    Case.objects.filter(pk=first.pk).update(
        legacy_id="CRM-7", subject="Retard — 遅延 <b>x</b>",
        fields={**first.fields, "note": "Ünïcode ✓", "nested": {"a": [1]}})
    response = agent_client.get(LIST, {"page_size": 50})
    assert response.status_code == 200
    body = response.json()["results"]
    expected = CaseSerializer(case_list().order_by("-created_at", "id"), many=True).data
    assert len(body) == 12 and body == [dict(row) for row in expected]
    assert {row["assigned_agent_name"] is None for row in body} == {True, False}
    assert any(row["resolved_at"] for row in body) and body[0]["legacy_id"] == "CRM-7"


def test_rows_refuse_a_serializer_that_is_not_flat():
    from rest_framework import serializers

    from apps.core.api.rows import SerializerRows

    class Nested(serializers.ModelSerializer):
        timeline = serializers.ListField(source="*")

        class Meta:
            model = Case
            fields = ["id", "timeline"]

    with pytest.raises(TypeError, match="timeline is not a flat field"):
        assert SerializerRows(Nested).lookups
