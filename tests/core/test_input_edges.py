"""No input of any shape gets a 500: real requests through the real URLconf, against real endpoints,
for deep JSON, unstorable text, non-finite numbers, extreme date-times, oversized bodies, bad
query strings and paths; plus generated JSON documents that must never produce a 5xx."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlencode, urlsplit

import pytest
import schemathesis
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DataError, connection, transaction
from django.test import AsyncClient, Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework import serializers
from rest_framework.views import APIView

from apps.cases.models import Case
from apps.core.api.exception_handlers import exception_handler
from apps.core.api.fields import StrictDateTimeField, StrictIsoDateTimeFilter
from apps.core.api.parsers import FormParser, JSONParser, MultiPartParser
from apps.core.input import (
    BIGINT_MAX,
    JSONDocumentError,
    json_document_errors,
    json_document_load,
    parse_datetime_strict,
    storable_text_error,
)
from tests.factories.accounts import MerchantUserFactory, UserFactory
from tests.factories.cases import REFUND_SCHEMA, QueueFactory, make_case
from tests.factories.inventory import StoreFactory

pytestmark = pytest.mark.django_db

CASES = "/api/v1/cases/"
EDGE_MIDDLEWARE = "apps.core.middleware.EdgeMiddleware"
EDGE_PARSERS = [JSONParser, FormParser, MultiPartParser]


def _settings_install_the_edge_layer() -> bool:
    # The project's settings module itself, as a running process reads it.
    from config import settings as project

    parsers = [f"{parser.__module__}.{parser.__name__}" for parser in EDGE_PARSERS]
    return (project.MIDDLEWARE[1:2] == [EDGE_MIDDLEWARE]
            and project.REST_FRAMEWORK.get("DEFAULT_PARSER_CLASSES") == parsers)


@pytest.fixture
def queue():
    return QueueFactory(slug="general")


@pytest.fixture
def ops_client(api_client, queue):
    api_client.force_authenticate(UserFactory(username="ops-edge", roles=["ops"]))
    return api_client


@pytest.fixture
def superuser(db):
    user = UserFactory(username="edge-superuser")
    user.is_staff = user.is_superuser = True
    user.save()
    return user


@pytest.fixture
def staff_client(superuser):
    client = Client()
    client.force_login(superuser)
    return client


def post_json(client, url: str, text: str):
    return client.post(url, data=text.encode("utf-8", "surrogatepass"), content_type="application/json")


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def with_fields(fields_json: str) -> str:
    """A case-create body whose dynamic fields are the given JSON text, verbatim."""
    return '{"queue": "general", "fields": ' + fields_json + "}"


# --------------------------------------------------------------------------- JSON bodies


@pytest.mark.parametrize("depth", [100, 5_000, 50_000])
def test_deeply_nested_json_is_a_400_with_a_message(ops_client, depth):
    response = post_json(ops_client, CASES, with_fields(nested(depth)))
    assert response.status_code == 400, response.content
    [(path, messages)] = response.json()["errors"].items()
    assert messages == ["Nested more than 64 levels deep."]
    # A document the parser could still walk names where it went too deep.
    assert path == ("non_field_errors" if depth > 100 else "fields" + ".0" * 63)


def test_nesting_up_to_the_limit_is_taken(ops_client):
    fields: dict = {}
    for _ in range(62):  # the body's object and "fields" make 64 levels
        fields = {"a": fields}
    response = ops_client.post(CASES, {"queue": "general", "fields": fields}, format="json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_non_finite_numbers_are_refused_with_their_path(ops_client, literal):
    response = post_json(ops_client, CASES, with_fields(f'{{"total": [1, {literal}]}}'))
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == ["fields.total.1"]
    assert "finite" in response.json()["errors"]["fields.total.1"][0]


def test_integers_beyond_bigint_are_refused_and_bigint_itself_is_taken(ops_client):
    response = post_json(ops_client, CASES, with_fields(f'{{"n": {BIGINT_MAX + 1}}}'))
    assert response.status_code == 400
    assert response.json()["errors"]["fields.n"] == [
        f"Whole numbers must be between {-BIGINT_MAX - 1} and {BIGINT_MAX}."
    ]
    response = post_json(ops_client, CASES, with_fields(f'{{"n": {BIGINT_MAX}}}'))
    assert response.status_code == 201, response.content
    assert Case.objects.get(pk=response.json()["id"]).fields == {"n": BIGINT_MAX}


@pytest.mark.parametrize(
    ("body", "path", "needle"),
    [
        ('{"queue": "general", "fields": {"note": "a\\u0000b"}}', "fields.note", "NUL"),
        ('{"queue": "general", "fields": {"a\\u0000": "x"}}', "fields.a\\x00", "key"),
        ('{"queue": "general", "fields": {"note": "a\\ud800"}}', "fields.note", "surrogate"),
        ('{"queue": "general", "fields": {"\\udfff": 1}}', "fields.\\udfff", "key"),
        ('{"queue": "gen\\u0000eral"}', "queue", "NUL"),
        ('{"queue": "general", "subject": "x\\ud800"}', "subject", "surrogate"),
    ],
)
def test_text_postgresql_cannot_store_is_refused_with_its_path(ops_client, body, path, needle):
    response = post_json(ops_client, CASES, body)
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == [path]
    assert needle in response.json()["errors"][path][0]


def test_surrogates_sent_as_raw_utf8_bytes_are_refused(ops_client):
    body = '{"queue": "general", "fields": {"note": "\ud800"}}'.encode("utf-8", "surrogatepass")
    response = ops_client.post(CASES, data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"  # not UTF-8 at all


def test_signal_payload_with_nul_is_refused_at_the_edge(ops_client):
    body = '{"signal_type": "late_delivery", "delivery_id": "d-1", "payload": {"a": "\\u0000"}}'
    response = post_json(ops_client, "/api/v1/signals/", body)
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["payload.a"]


def test_form_bodies_follow_the_same_text_rules(ops_client):
    response = ops_client.post(CASES, data="queue=gen%00eral",
                               content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["queue"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ('{"a": NaN}', "a: Numbers must be finite"),
        ('{"a": "\\u0000"}', "a: NUL"),
        ("[" * 5_000 + "]" * 5_000, "Nested more than 64 levels deep."),
        ("{oops", "Expecting property name"),
        ('{"a": 1}', None),
    ],
)
def test_dynamic_fields_sent_as_form_text_follow_the_json_rules(ops_client, fields, message):
    data = {"queue": "general", "fields": fields}
    for content_type, body in (("application/x-www-form-urlencoded", urlencode(data).encode()),
                               (MULTIPART_CONTENT, encode_multipart(BOUNDARY, data))):
        with transaction.atomic():
            response = ops_client.post(CASES, data=body, content_type=content_type)
            transaction.set_rollback(True)
        if message is None:
            assert response.status_code == 201 and response.json()["fields"] == {"a": 1}
        else:
            assert response.status_code == 400, response.content[:300]
            assert list(response.json()) == ["fields"] and message in response.json()["fields"][0]


# --------------------------------------------------------------------------- query strings and paths


@pytest.mark.parametrize(
    ("query", "name", "needle"),
    [
        ("merchant_ref=a%00b", "merchant_ref", "NUL"),
        ("merchant_ref=%ff%fe", "merchant_ref", "UTF-8"),
        ("merchant_ref=%ED%A0%80", "merchant_ref", "UTF-8"),  # a surrogate's UTF-8 form
        ("a%00=1", "a\\x00", "name"),
    ],
)
def test_query_parameters_that_cannot_be_stored_are_named(ops_client, query, name, needle):
    response = ops_client.get(f"{CASES}?status=new&{query}")
    assert response.status_code == 400, response.content
    assert list(response.json()["errors"]) == [name]
    assert needle in response.json()["errors"][name][0]


def test_too_many_query_parameters_is_a_400(ops_client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 10
    response = ops_client.get(CASES + "?" + "&".join(f"p{i}=1" for i in range(11)))
    assert response.status_code == 400 and response.json()["code"] == "too_many_fields"
    assert ops_client.get(CASES + "?" + "&".join(f"p{i}=1" for i in range(10))).status_code == 200


def test_path_parameters_that_cannot_be_stored_are_named(api_client):
    merchant_user = MerchantUserFactory()
    store = StoreFactory(merchant=merchant_user.merchant)
    api_client.force_authenticate(merchant_user.user)
    response = api_client.get(f"/api/v1/inventory/stores/{store.pk}/items/AB%00C/")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["sku"] and "NUL" in response.json()["errors"]["sku"][0]
    # A path that matches no route is still refused by its text, under "path".
    response = api_client.get("/api/v1/no%00such/")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["path"]


def test_admin_gets_a_short_text_page_not_a_server_error(staff_client):
    response = staff_client.get("/admin/cases/case/?q=a%00b")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/plain") and b"NUL" in response.content


@pytest.mark.parametrize(
    "query",
    [
        "created_after=2024-01-01T00:00:00%2B23:59",  # PostgreSQL refuses offsets of 16 hours and more
        "created_after=0001-01-01T00:00:00%2B01:00",
        "created_before=9999-12-31T23:59:59-01:00",
        "created_after=2024-01-01T00:00:00%2B99:00",
        "fields=%7B%22a%22%3A%22%5Cu0000%22%7D",  # {"a": "\u0000"}: jsonb refuses it
        "fields=%7B%22a%22%3A%22%5Cud800%22%7D",
        "fields=" + "%5B" * 5_000,
        "field.total__gt=Infinity",
        "field.total__gt=NaN",
        "field.total__gt=1e5000",
        "field.total=1e5000",
        "field.total__lt=1e999999",  # once ~40 s of CPU spelling out a million-digit integer
        "field.total=1e999999",
        "assigned_agent=99999999999999999999999",
        "page=99999999999999999999999",
    ],
)
def test_extreme_filter_values_never_get_a_server_error(ops_client, query):
    with transaction.atomic():  # a refused statement aborts only this block
        response = ops_client.get(f"{CASES}?{query}")
    assert response.status_code < 500, (query, response.status_code, response.content[:300])
    assert isinstance(response.json(), dict)  # JSON either way: a page of results or the errors


@pytest.mark.parametrize(
    ("query", "name", "needle"),
    [
        ("created_after=2024-01-01T00:00:00%2B23:59", "created_after", "offset"),
        ("created_before=9999-12-31T23:59:59-01:00", "created_before", "out of range"),
        ("fields=%7B%22a%22%3A%5B1%2C1e999%5D%7D", "fields", "a.1: Numbers must be finite"),
        ("fields=" + "%5B" * 5_000, "fields", "Nested more than 64 levels deep."),
        ("fields=%5B1%5D", "fields", "Must be a JSON object."),
        ("field.total__gt=1e5000", "field.total__gt", "A number is required"),
        ("field.total__lte=1e999999", "field.total__lte", "A number is required"),
        ("field.total__gt=NaN", "field.total__gt", "A number is required"),
        ("assigned_agent=99999999999999999999999", "assigned_agent", "less than or equal"),
    ],
)
def test_filter_values_out_of_range_are_refused_by_name(ops_client, query, name, needle):
    response = ops_client.get(f"{CASES}?{query}")
    assert response.status_code == 400, response.content[:300]
    body = response.json()
    assert list(body) == [name] and needle in body[name][0], body


def test_numbers_no_stored_value_can_hold_are_matched_as_text(ops_client):
    ops_client.post(CASES, {"queue": "general", "fields": {"ref": "1e5000", "n": 12}}, format="json")
    ops_client.post(CASES, {"queue": "general", "fields": {"ref": "12", "n": "12"}}, format="json")
    found = ops_client.get(CASES, {"field.ref": "1e5000"}).json()["results"]
    assert [case["fields"]["ref"] for case in found] == ["1e5000"]
    found = ops_client.get(CASES, {"field.n": "12"}).json()["results"]  # both the number and the text
    assert sorted(str(case["fields"]["n"]) for case in found) == ["12", "12"]
    found = ops_client.get(CASES, {"field.n__gte": "1.2e1"}).json()["results"]
    assert [case["fields"]["n"] for case in found] == [12]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("1e999", "Numbers must be finite"),
        ("[1, NaN]", "1: Numbers must be finite"),
        ('"a\\u0000"', "NUL"),
        (str(2**70), "Whole numbers must be between"),
        ("[" * 5_000, None),  # not JSON: matched as the text itself
        ("9" * 5_000, None),  # past Python's integer conversion limit: text too
    ],
)
def test_admin_dynamic_field_filter_never_fails(staff_client, raw, message):
    # The sidebar filter shows (and applies) once a queue's schema offers choices.
    refunds = QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)
    make_case(queue=refunds, fields={"order_id": "A-100", "order_total": 5})
    with transaction.atomic():
        response = staff_client.get("/admin/cases/case/", {"df": f"order_total:{raw}"})
    assert response.status_code == 200, response.content[:300]
    shown = [str(m) for m in response.context["messages"]]
    if message is None:
        assert shown == []
    else:
        assert len(shown) == 1 and message in shown[0] and "order_total" in shown[0]
    assert response.context["cl"].result_count == 0
    assert staff_client.get("/admin/cases/case/", {"df": "order_total:5"}).context["cl"].result_count == 1


def test_admin_date_filters_with_offsets_postgresql_refuses_are_a_4xx(staff_client):
    with transaction.atomic():
        response = staff_client.get("/admin/cases/case/?created_at__gte=2024-01-01T00:00:00%2B23:59")
    assert response.status_code == 400, response.content[:300]  # the database refused the offset
    assert response["Content-Type"].startswith("text/plain")


# --------------------------------------------------------------------------- body size


def test_a_body_over_the_limit_is_a_413_json_answer(ops_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    response = post_json(ops_client, CASES, json.dumps({"queue": "general", "subject": "x" * 2_000}))
    assert response.status_code == 413
    assert response.json() == {"detail": "The request body is too large; the limit is 1000 bytes.",
                               "code": "too_large"}
    response = post_json(ops_client, CASES, json.dumps({"queue": "general", "subject": "x" * 100}))
    assert response.status_code == 201


def test_an_invalid_content_length_is_a_400(ops_client):
    # Django reads CONTENT_LENGTH with int() when the body is accessed: a 500 for "abc".
    response = ops_client.generic("POST", CASES, data=b"{}", content_type="application/json",
                                  CONTENT_LENGTH="abc")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["Content-Length"]


def test_a_body_over_the_limit_is_a_413_for_admin_too(staff_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    response = staff_client.post("/admin/cases/queue/add/", {"name": "x" * 2_000})
    assert response.status_code == 413 and response["Content-Type"].startswith("text/plain")


def test_uploads_are_taken_up_to_their_own_limit(api_client, settings):
    merchant_user = MerchantUserFactory()
    store = StoreFactory(merchant=merchant_user.merchant)
    api_client.force_authenticate(merchant_user.user)
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2_000
    settings.UPLOAD_MAX_BYTES = 100_000
    settings.INVENTORY_CSV_MAX_BYTES = 90_000
    rows = "".join(f"SKU-{n:06d},true,1.99\n" for n in range(1_000))  # ~21 kB: over the data limit
    url = f"/api/v1/inventory/stores/{store.pk}/feeds/csv/"
    csv_file = SimpleUploadedFile("feed.csv", f"sku,available,price\n{rows}".encode(),
                                  content_type="text/csv")
    with transaction.atomic():
        response = api_client.post(url, {"file": csv_file}, format="multipart")
    assert response.status_code == 202, response.content
    big = SimpleUploadedFile("feed.csv", b"sku,available,price\n" + b"A,true,1\n" * 20_000,
                             content_type="text/csv")
    response = api_client.post(url, {"file": big}, format="multipart")
    assert response.status_code == 413 and response.json()["code"] == "too_large"


def test_without_the_middleware_the_api_still_answers_413_json(api_client, settings):
    # The body is read lazily: Django raises RequestDataTooBig inside the view; the API's
    # exception handler answers it (Django alone would send its HTML 400 page).
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m != EDGE_MIDDLEWARE]
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000
    merchant_user = MerchantUserFactory()
    store = StoreFactory(merchant=merchant_user.merchant)
    api_client.force_authenticate(merchant_user.user)
    response = api_client.post(f"/api/v1/inventory/stores/{store.pk}/feeds/",
                               data=json.dumps({"items": [{"sku": "x" * 2_000}]}),
                               content_type="application/json")
    assert response.status_code == 413 and response.json()["code"] == "too_large"


def test_deep_json_read_from_the_raw_body_is_a_400(api_client):
    # The JSON feed parses request.body itself, past the API's parser: the handler's last resort.
    merchant_user = MerchantUserFactory()
    store = StoreFactory(merchant=merchant_user.merchant)
    api_client.force_authenticate(merchant_user.user)
    response = api_client.post(f"/api/v1/inventory/stores/{store.pk}/feeds/",
                               data='{"items": ' + nested(50_000) + "}", content_type="application/json")
    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    "document",
    [
        nested(5_000),  # YAML flow style: the health app reads text documents as YAML
        "checks: " + nested(500),
        "checks:\n" + "".join("  " * level + "- \n" for level in range(3_000)),
    ],
)
def test_deep_documents_sent_as_text_are_a_4xx(api_client, superuser, document):
    api_client.force_authenticate(superuser)
    with transaction.atomic():
        response = api_client.put("/api/v1/health/specs/deep/", {"document": document}, format="json")
    assert 400 <= response.status_code < 500, response.content[:300]


BILLION_LAUGHS = "\n".join(
    ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    + [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 10)}]" for n in range(1, 10)]
    + ["checks: [*a9]"]
)


@pytest.mark.parametrize(
    ("document", "field", "needle"),
    [
        (BILLION_LAUGHS, "document", "once its aliases are expanded"),
        ("checks: &c [*c]", "document", "refers to a node that contains it"),
        ("checks: []\n" + "#" * 300_000, "document", "the limit is 262144"),
        ("checks: [{name: db, type: database, params: {n: .nan}}]", "checks.0.params.n", "finite"),
        ('checks: [{name: db, type: database, params: {n: "a\\0b"}}]', "checks.0.params.n", "NUL"),
        (f"checks: [{{name: db, type: database, params: {{n: {2**64}}}}}]", "checks.0.params.n", "between"),
        ("checks: [{name: db, type: database, params: {n: " + "9" * 5_000 + "}}]", "document", "YAML"),
        ("checks: [{name: db, type: database, params: {n: !!binary aGk=}}]", "document", "no JSON"),
        ("checks: !!set {a, b}", "document", "no JSON equivalent"),
        ('{"checks": [{"name": "db", "type": "database", "params": {"n": [1e999]}}]}', "checks.0.params.n.0",
         "finite"),
        ('{"checks": ' + "[" * 5_000 + "]" * 5_000 + "}", "document", "Nested more than 64"),
        ("checks: [{name: db, type: database, params: " + "[" * 100 + "]" * 100 + "}]", "checks.0.params" +
         ".0" * 61, "Nested more than 64 levels deep."),
    ],
)
def test_spec_documents_are_bounded_and_hold_only_what_json_can(api_client, superuser, document, field,
                                                                 needle):
    api_client.force_authenticate(superuser)
    response = api_client.put("/api/v1/health/specs/bounded/", {"document": document}, format="json")
    assert response.status_code == 400, response.content[:300]
    errors = response.json()["errors"]
    assert list(errors) == [field] and needle in errors[field][0], errors


def test_spec_aliases_within_bounds_and_dates_are_read_as_json_would(api_client, superuser):
    api_client.force_authenticate(superuser)
    document = ("description: 2024-05-01\n"
                "defaults: &d {interval: 20}\n"
                "checks: [{name: one, type: database, <<: *d}, {name: two, type: redis, <<: *d}]\n")
    response = api_client.put("/api/v1/health/specs/aliases/", {"document": document}, format="json")
    assert response.status_code == 201, response.content[:300]
    assert [(check["name"], check["interval_s"]) for check in response.json()["checks"]] == [("one", 20.0),
                                                                                         ("two", 20.0)]


def test_the_middleware_works_under_asgi():
    client = AsyncClient()
    response = async_to_sync(client.get)("/api/v1/cases/?q=%00")
    assert response.status_code == 400 and list(response.json()["errors"]) == ["q"]
    response = async_to_sync(client.get)("/healthz")
    assert response.status_code == 200  # a clean request passes through


# --------------------------------------------------------------------------- the handler's last resort


def _database_error() -> DataError:
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT '2024-01-01 00:00:00+23:59'::timestamptz")
    except DataError as exc:
        return exc
    raise AssertionError("PostgreSQL took an offset of 23:59")


def test_a_database_data_error_becomes_a_400_and_is_logged_with_the_view(caplog):
    class CaseListView(APIView):
        pass

    with caplog.at_level(logging.WARNING, logger="apps.core.api.exception_handlers"):
        response = exception_handler(_database_error(), {"view": CaseListView()})
    assert response.status_code == 400 and "displacement" in response.data["errors"]["non_field_errors"][0]
    assert "CaseListView" in caplog.text


def test_value_errors_become_a_400_only_when_raised_while_filtering():
    def filter_queryset():
        int(float("inf"))

    try:
        filter_queryset()
    except OverflowError as exc:
        assert exception_handler(exc, {"view": None}).status_code == 400
    try:
        int(float("inf"))
    except OverflowError as exc:
        assert exception_handler(exc, {"view": None}) is None  # elsewhere it is a bug: a 500


# --------------------------------------------------------------------------- pure rules and strict fields


def test_storable_text_rule():
    assert storable_text_error("plain, ünïcode, 😀") is None
    assert "NUL" in storable_text_error("a\x00")
    assert "surrogate" in storable_text_error("\udc80")


def test_document_errors_walk_without_recursion_and_name_paths():
    document: list = []
    for _ in range(100_000):
        document = [document]
    assert json_document_errors(document, max_depth=3) == {"0.0.0": ["Nested more than 3 levels deep."]}
    found = json_document_errors({"items": [{"sku": "ok"}, {"sku": "a\x00", "price": float("nan")}]})
    assert set(found) == {"items.1.sku", "items.1.price"}
    assert json_document_errors({"items": [{"sku": "a\x00"}]}, strings=False) == {}
    with pytest.raises(JSONDocumentError) as raised:
        json_document_load(b'{"a": 1e999}')
    assert list(raised.value.errors) == ["a"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T12:00:00+05:30", "2024-05-01T06:30:00+00:00"),
        ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00+00:00"),
        ("2024-05-01T12:00:00+18:00", "2024-04-30T18:00:00+00:00"),
        ("2024-05-01 12:00", "2024-05-01T12:00:00+00:00"),
        ("2024-05-01T12:00:00+18:01", "offset"),
        ("2024-05-01T12:00:00+99:00", "offset"),
        ("0001-01-01T00:00:00+01:00", "out of range"),
        ("9999-12-31T23:59:59-00:01", "out of range"),
        ("2024-13-01T00:00:00", "month"),
        ("yesterday", "ISO 8601"),
        ("2024-05-01T12:00:00\x00", "NUL"),
    ],
)
def test_parse_datetime_strict(value, expected):
    if expected[0].isdigit():
        assert parse_datetime_strict(value).isoformat() == expected
    else:
        with pytest.raises(ValueError, match=expected):
            parse_datetime_strict(value)


def test_strict_datetime_field_and_filter_refuse_what_postgresql_would():
    class Input(serializers.Serializer):
        at = StrictDateTimeField()

    assert Input(data={"at": "2024-05-01T12:00:00+05:30"}).is_valid()
    form = Input(data={"at": "2024-05-01T12:00:00+23:59"})
    assert not form.is_valid() and "offset" in str(form.errors["at"][0])

    import django_filters

    class CaseDates(django_filters.FilterSet):
        after = StrictIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

        class Meta:
            model = Case
            fields: list[str] = []

    good = CaseDates({"after": "2024-05-01T12:00:00+15:59"}, queryset=Case.objects.all())
    assert good.is_valid() and list(good.qs) == []  # the database takes what the filter lets through
    bad = CaseDates({"after": "2024-05-01T12:00:00+16:00"}, queryset=Case.objects.all())
    assert bad.is_valid()  # within 18 hours: converted to UTC, so PostgreSQL's 16-hour limit never applies
    assert list(bad.qs) == []
    worse = CaseDates({"after": "9999-12-31T23:59:59-01:00"}, queryset=Case.objects.all())
    assert not worse.is_valid() and "out of range" in worse.errors["after"][0]


# --------------------------------------------------------------------------- generated documents

_unstorable = st.sampled_from(["\x00", "\ud800", "\udfff", "\x00\ud83d"])
_texts = st.text(max_size=12) | st.builds(lambda a, b, c: a + b + c, st.text(max_size=4), _unstorable,
                                          st.text(max_size=4))
_scalars = (
    st.none() | st.booleans() | _texts | st.floats()
    | st.integers(min_value=-(2**70), max_value=2**70)
)
_documents = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_texts, children, max_size=4),
    max_leaves=25,
)
_bodies = st.one_of(
    _documents.map(lambda doc: json.dumps({"queue": "general", "fields": doc})),
    _documents.map(lambda doc: json.dumps({"queue": "general", "subject": doc, "merchant_ref": doc})),
    _documents.map(json.dumps),
    st.integers(min_value=60, max_value=3_000).map(lambda n: with_fields(nested(n))),
)


@hypothesis_settings(max_examples=50, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(body=_bodies)
def test_generated_json_documents_never_get_a_server_error(ops_client, body):
    with transaction.atomic():
        response = post_json(ops_client, CASES, body)
        transaction.set_rollback(True)  # each example starts from the same data
    assert response.status_code < 500, (body[:200], response.content[:300])
    if response.status_code == 201:
        assert storable_text_error(json.dumps(response.json(), ensure_ascii=False)) is None


# --------------------------------------------------------------------------- every endpoint of the schema


@pytest.fixture(scope="session")
def openapi_schema():
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    document = SchemaGenerator().get_schema(request=None, public=True)
    return schemathesis.openapi.from_dict(json.loads(OpenApiJsonRenderer().render(document)))


def _send(client, case):
    """A generated case through the Django test client: in-process, on the test's transaction."""
    transport = case.as_transport_kwargs(base_url="http://testserver")
    url = urlsplit(transport["url"])
    path = url.path + (f"?{url.query}" if url.query else "")
    if transport.get("params"):
        path += ("&" if "?" in path else "?") + urlencode(transport["params"], doseq=True)
    headers = {k: str(v) for k, v in transport.get("headers", {}).items() if k.lower() == "content-type"}
    content_type = headers.get("Content-Type", "application/octet-stream")
    if "json" in transport:
        body = json.dumps(transport["json"]).encode()
        content_type = "application/json"
    elif transport.get("files") is not None:
        fields: dict[str, list] = {}
        for name, part in transport["files"]:
            filename, content = part[:2] if isinstance(part, tuple) else (None, part)
            value = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
            if filename is not None:
                value = SimpleUploadedFile(filename, value.encode(), content_type="text/csv")
            fields.setdefault(name, []).append(value)
        for name, value in (transport.get("data") or {}).items():
            fields.setdefault(name, []).append(str(value))
        body, content_type = encode_multipart(BOUNDARY, fields), MULTIPART_CONTENT
    elif isinstance(transport.get("data"), dict):
        body = urlencode(transport["data"], doseq=True).encode()
    else:
        data = transport.get("data") or b""
        body = data.encode() if isinstance(data, str) else data
    return client.generic(transport["method"], path, data=body, content_type=content_type)


def test_no_endpoint_of_the_api_answers_with_a_server_error(openapi_schema, api_client, superuser, queue):
    """Schemathesis cases for every operation of the OpenAPI schema, as a superuser so requests get
    past permissions into the views. (Its pytest plugin's lazy loader does not run on pytest 9.)"""
    api_client.force_authenticate(superuser)
    operations = [result.ok() for result in openapi_schema.get_all_operations()]
    assert len(operations) > 15

    for operation in operations:
        @hypothesis_settings(max_examples=20, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def no_server_error(case):
            with transaction.atomic():
                response = _send(api_client, case)
                transaction.set_rollback(True)
            assert response.status_code < 500, (case.method, case.formatted_path, response.content[:300])

        no_server_error()


def test_settings_install_the_edge_layer():
    assert _settings_install_the_edge_layer()  # right after SecurityMiddleware; the parsers by default
    assert APIView.parser_classes == EDGE_PARSERS  # what every view without its own parsers gets


@pytest.mark.django_db
def test_an_api_url_that_matches_no_route_answers_json_404(client):
    response = client.get("/api/v1/inventory/runs/abc/")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not found.", "code": "not_found"}
    # Outside the API the usual page stays.
    assert client.get("/no-such-page/")["Content-Type"].startswith("text/html")


@pytest.mark.django_db
@pytest.mark.parametrize("credentials", ["ops\x00:secret", "ops:sec\x00ret", "op\ud800s:secret"])
def test_basic_credentials_postgresql_cannot_store_are_refused_before_the_lookup(client, credentials):
    import base64

    token = base64.b64encode(credentials.encode("utf-8", "surrogatepass")).decode()
    response = client.get("/api/v1/cases/", HTTP_AUTHORIZATION=f"Basic {token}")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="api"'
