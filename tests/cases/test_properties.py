"""Dynamic fields under generated input (hypothesis): any JSON posted as a case's `fields`, and any
text in the `field.<name>` and `fields` filters, gets an answer below 500; what is taken comes
back unchanged and is found again by the filters."""

from __future__ import annotations

import json
from urllib.parse import quote_from_bytes

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.core.input import BIGINT_MAX, BIGINT_MIN
from tests.factories.accounts import UserFactory
from tests.factories.cases import QueueFactory

pytestmark = pytest.mark.django_db

CASES = "/api/v1/cases/"
SETTINGS = hypothesis_settings(
    max_examples=60, deadline=None, database=None, derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_unstorable = st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", "\udbff"])
_text = st.text(max_size=12) | _unstorable | st.sampled_from(["", " 12 ", "1e5000", "1e999999", "-0", "null",
                                                              "true", "NaN", "٣", "9" * 40])
_numbers = (
    st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([BIGINT_MAX, BIGINT_MIN, BIGINT_MAX + 1, 0.1, -0.0, 1e-300, 1.7976931348623157e308])
)
_scalars = st.none() | st.booleans() | _numbers | _text
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                       | st.dictionaries(_text, inner, max_size=3), max_leaves=10)
_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True)
# JSON text as a client may send it: NaN/Infinity literals, deep nesting, numbers too long to read.
_raw_values = st.one_of(
    _values.map(json.dumps),
    st.sampled_from(["NaN", "-Infinity", "1e999", "1" + "0" * 5_000, "[" * 3_000 + "]" * 3_000, '"\\u0000"']),
)


def _query(params: dict[str, str]) -> str:
    """A query string of any text, lone surrogates included (sent as the bytes of their UTF-8 form)."""
    return "&".join(f"{quote_from_bytes(k.encode('utf-8', 'surrogatepass'))}="
                    f"{quote_from_bytes(v.encode('utf-8', 'surrogatepass'))}" for k, v in params.items())


@pytest.fixture
def ops_client(api_client):
    QueueFactory(slug="general")  # its fields schema takes any object
    api_client.force_authenticate(UserFactory(username="ops-properties", roles=["ops"]))
    return api_client


def _storable(value) -> bool:
    """Whether the API's document rules take `value` (mirrors apps.core.input, for expectations)."""
    if isinstance(value, str):
        return "\x00" not in value and not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return True
    if isinstance(value, int):
        return BIGINT_MIN <= value <= BIGINT_MAX
    if isinstance(value, list):
        return all(map(_storable, value))
    return all(_storable(k) and _storable(v) for k, v in value.items())


@SETTINGS
@given(fields=st.dictionaries(_text, _values, max_size=4))
def test_any_fields_document_is_taken_whole_or_refused_by_path(ops_client, fields):
    body = json.dumps({"queue": "general", "fields": fields})
    with transaction.atomic():
        response = ops_client.post(CASES, data=body.encode(), content_type="application/json")
        transaction.set_rollback(True)
    assert response.status_code in (201, 400), (body[:200], response.content[:300])
    if _storable(fields):
        assert response.status_code == 201, response.content[:300]
        assert response.json()["fields"] == fields  # exactly what was sent, jsonb or not
    else:
        assert response.status_code == 400
        assert all(path.startswith("fields") for path in response.json()["errors"])


@SETTINGS
@given(raw=_raw_values)
def test_raw_json_text_as_fields_never_fails(ops_client, raw):
    body = '{"queue": "general", "fields": {"v": ' + raw + "}}"
    with transaction.atomic():
        response = ops_client.post(CASES, data=body.encode("utf-8", "surrogatepass"),
                                   content_type="application/json")
        transaction.set_rollback(True)
    assert response.status_code in (201, 400), (raw[:80], response.content[:300])


@SETTINGS
@given(name=_names | _text, op=st.sampled_from(["", "__gt", "__gte", "__lt", "__lte", "__contains"]),
       value=_text | _numbers.map(str), contained=_raw_values)
def test_dynamic_field_filters_never_fail(ops_client, name, op, value, contained):
    with transaction.atomic():
        one = ops_client.get(CASES + "?" + _query({f"field.{name}{op}": value}))
        many = ops_client.get(CASES + "?" + _query({"fields": '{"k": ' + contained + "}"}))
        transaction.set_rollback(True)
    for response in (one, many):
        assert response.status_code in (200, 400), (name, op, value, response.content[:300])
        assert isinstance(response.json(), dict)


_findable = (
    st.booleans() | st.integers(min_value=BIGINT_MIN, max_value=BIGINT_MAX)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12)
)


def _as_query_text(value) -> str:
    return json.dumps(value) if isinstance(value, bool) else value if isinstance(value, str) else repr(value)


@SETTINGS
@given(name=_names, value=_findable)
def test_a_stored_value_is_found_by_both_filters(ops_client, name, value):
    with transaction.atomic():
        created = ops_client.post(CASES, {"queue": "general", "fields": {name: value}}, format="json")
        assert created.status_code == 201, created.content[:300]
        by_value = ops_client.get(CASES, {f"field.{name}": _as_query_text(value)})
        by_document = ops_client.get(CASES, {"fields": json.dumps({name: value})})
        transaction.set_rollback(True)
    for response in (by_value, by_document):
        assert response.status_code == 200, response.content[:300]
        assert created.json()["id"] in [case["id"] for case in response.json()["results"]]
