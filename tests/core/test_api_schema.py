"""The OpenAPI schema tells the truth: schemathesis drives every operation of /api/schema/, as an
admin and as a merchant user, through Django's test client (in-process, on the test's own
transaction), and no answer is a server error or one the schema does not describe (status code,
content type, body). Bounded and derandomised, so CI sees the same cases every run."""

from __future__ import annotations

import io
import logging
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from urllib3 import HTTPResponse
from urllib3._collections import HTTPHeaderDict

from apps.inventory import services as inventory
from tests.factories.accounts import MerchantUserFactory, UserFactory
from tests.factories.cases import QueueFactory, make_case
from tests.factories.health import HealthSpecFactory, check_doc
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items
from tests.factories.merchants import agent_reply, hub_case, png

pytestmark = pytest.mark.django_db

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Per operation and user: ~20 operations x 2 users x this stays well under a minute here.
EXAMPLES = 25
BASE_URL = "http://testserver"
# Headers the Django test client sets itself from its own arguments.
_OWN_HEADERS = {"content-type", "content-length", "host", "cookie"}


class DjangoClientAdapter(BaseAdapter):
    """A requests transport that hands each prepared request to a Django test client: schemathesis
    serialises the case as for a real server, and the view runs in this process and transaction."""

    def __init__(self, client: Client) -> None:
        super().__init__()
        self.client = client

    def send(self, request, **kwargs):
        url = urlsplit(request.url)
        path = url.path + (f"?{url.query}" if url.query else "")
        body = request.body or b""
        answer = self.client.generic(
            request.method, path, data=body.encode() if isinstance(body, str) else body,
            content_type=request.headers.get("Content-Type", ""),
            headers={k: v for k, v in request.headers.items() if k.lower() not in _OWN_HEADERS},
        )
        # Downloads (the hub's attachments) stream their body.
        content = b"".join(answer.streaming_content) if answer.streaming else answer.content
        headers = HTTPHeaderDict()
        for name, value in answer.items():
            headers.add(name, value)
        response = requests.Response()
        response.status_code = answer.status_code
        response.reason = answer.reason_phrase
        response.headers = requests.structures.CaseInsensitiveDict(headers)
        response.raw = HTTPResponse(body=io.BytesIO(content), headers=headers,
                                    status=answer.status_code, preload_content=False, version=11)
        response._content = content
        response.url, response.request = request.url, request
        return response

    def close(self) -> None:
        pass


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # Schemathesis sends made-up Basic credentials too: each costs a full password hash otherwise.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def hub_rates_past_the_fuzzing(settings):
    # The hub's per-user limits would answer most generated cases with 429 (tested on their own).
    settings.HUB_THROTTLE_RATES = {scope: "100000/min" for scope in settings.HUB_THROTTLE_RATES}


@pytest.fixture
def world():
    """One of each object the API has, so that generated cases also reach real ones."""
    merchant_user = MerchantUserFactory()
    store = StoreFactory(merchant=merchant_user.merchant)
    skus = catalog_create(store.merchant, 3)
    run = inventory.feed_submit_json(store=store, body=feed_body(feed_items(skus)), enqueue=False)
    inventory.ingestion_run_process(run_id=run.pk)
    queued = inventory.feed_submit_json(store=store, body=feed_body(feed_items(skus[:1])), enqueue=False)
    case = make_case(queue=QueueFactory(slug="general"), fields={"order_id": "A-1"})
    spec = HealthSpecFactory(name="platform", checks=[check_doc("db")])
    admin = UserFactory(username="schema-admin")
    admin.is_staff = admin.is_superuser = True
    admin.save()
    # The merchant user's own case, thread and attachment, so the hub's reads and writes reach them.
    own_case = hub_case(merchant_user, subject="Schema hub case")
    reply = agent_reply(own_case, files=[png()])
    return {
        "admin": admin, "merchant": merchant_user.user,
        "known": {"id": str(case.pk), "store_id": store.pk, "sku": skus[0], "run_id": queued.pk,
                  "name": spec.name, "case_id": str(own_case.pk), "message_id": reply.pk,
                  "attachment_id": reply.attachments.get().pk},
        # A valid body per operation, sent instead of the generated one now and then: the success
        # answers of writes get checked against the schema too.
        "bodies": {
            ("POST", "/api/v1/cases/"): {"queue": "general", "fields": {"order_id": "A-2"}},
            ("POST", "/api/v1/cases/{id}/transition/"): {"status": "resolved", "note": "done"},
            ("POST", "/api/v1/cases/{id}/notes/"): {"body": "Called the customer back."},
            ("POST", "/api/v1/cases/{id}/legacy-transfer/"): {"direction": "out", "legacy_ref": "CRM-1"},
            ("POST", "/api/v1/signals/"): {"signal_type": "late_delivery", "delivery_id": "d-1"},
            ("POST", "/api/v1/inventory/signals/"): {"store_id": store.pk, "sku": skus[0], "found": False},
            ("POST", "/api/v1/inventory/stores/{store_id}/feeds/"): {
                "items": [{"sku": skus[1], "price": 2.5}, {"sku": "no-such-sku", "price": 1}]},
            ("PUT", "/api/v1/health/specs/{name}/"): {"document": "checks: [{name: db, type: database}]"},
            ("POST", "/api/v1/hub/cases/"): {"subject": "Printer jammed", "text": "Paper stuck."},
            ("POST", "/api/v1/hub/cases/{case_id}/messages/"): {"text": "Any news?"},
            ("POST", "/api/v1/hub/cases/{case_id}/read/"): {"up_to": reply.pk},
            ("POST", "/api/v1/hub/auth/login/"): {"username": merchant_user.user.username,
                                                  "password": "pass"},
        },
    }


@pytest.fixture
def api_schema():
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return schemathesis.openapi.from_dict(response.json())


def _strategy(operation, known: dict):
    """Generated cases, positive and negative, many of them on objects that exist.

    Path parameters are negated only... never: a value off its route's type (`runs/abc/`) matches
    no route at all, so it tests Django's URL resolver, not this operation.
    """
    names = {p.name for p in operation.path_parameters}
    if not names:
        return st.one_of(operation.as_strategy(),
                         operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
    ids = {name: value for name, value in known.items() if name in names}
    return st.one_of(
        operation.as_strategy(),
        operation.as_strategy(path_parameters=ids),
        operation.as_strategy(path_parameters=ids, generation_mode=GenerationMode.NEGATIVE),
    )


class _Recorder(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _fuzz_every_operation(api_schema, user, world: dict) -> set[tuple[str, str, int]]:
    client = Client()
    client.force_login(user)
    session = requests.Session()
    session.mount(BASE_URL, DjangoClientAdapter(client))
    seen: set[tuple[str, str, int]] = set()
    recorder = _Recorder()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for name in ("apps.core.api.exception_handlers", "apps.core.middleware"):
        logging.getLogger(name).addHandler(recorder)
    try:
        for operation in operations:
            _fuzz_operation(operation, session, world, recorder, seen)
    finally:
        for name in ("apps.core.api.exception_handlers", "apps.core.middleware"):
            logging.getLogger(name).removeHandler(recorder)
    return seen


def _fuzz_operation(operation, session, world: dict, recorder: _Recorder, seen: set) -> None:
    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=_strategy(operation, world["known"]), known_body=st.booleans())
    def conforms(case, known_body):
        body = world["bodies"].get((case.method, operation.path))
        if known_body and body is not None and case.media_type == "application/json":
            case.body = dict(body)
        with transaction.atomic():
            response = case.call(base_url=BASE_URL, session=session)
            transaction.set_rollback(True)  # every case starts from the same objects
        seen.add((case.method, operation.path, response.status_code))
        case.validate_response(response, checks=CHECKS)
        # The handler's last resort answered 400, but an edge check should have, by field.
        unchecked = [m for m in recorder.messages if m.startswith("Unchecked input reached")]
        recorder.messages.clear()
        assert not unchecked, (unchecked, case.as_curl_command())

    conforms()


def test_every_operation_conforms_as_an_admin(api_schema, world):
    seen = _fuzz_every_operation(api_schema, world["admin"], world)
    # The admin got past permissions into the views: successes on reads, writes and deletes alike.
    statuses = {(method, path): status for method, path, status in seen if status < 300}
    assert ("GET", "/api/v1/cases/{id}/") in statuses and ("GET", "/api/v1/inventory/stores/") in statuses
    assert ("DELETE", "/api/v1/health/specs/{name}/") in statuses


def test_every_operation_conforms_as_a_merchant_user(api_schema, world):
    seen = _fuzz_every_operation(api_schema, world["merchant"], world)
    ok = {(method, path) for method, path, status in seen if status < 300}
    assert ("GET", "/api/v1/inventory/stores/{store_id}/items/{sku}/") in ok
    assert not any(path.startswith("/api/v1/cases/") for _, path in ok)  # merchants do not work cases
    # The hub is theirs: its reads and writes succeed on their own objects.
    for operation in (("GET", "/api/v1/hub/cases/{case_id}/messages/"),
                      ("GET", "/api/v1/hub/cases/{case_id}/"),
                      ("GET", "/api/v1/hub/attachments/{attachment_id}/")):
        assert operation in ok, operation
    assert {("POST", "/api/v1/hub/cases/"), ("POST", "/api/v1/hub/cases/{case_id}/messages/")} & ok


def test_the_schema_validates_without_warnings(tmp_path):
    # Warnings are where the schema guesses (an unknown authenticator, clashing enum names).
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yaml"))


def test_lists_are_documented_as_paginated_and_errors_in_one_shape(api_schema):
    document = api_schema.raw_schema
    paginated = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            ok = operation["responses"].get("200", {}).get("content", {}).get("application/json", {})
            if ok.get("schema", {}).get("$ref", "").startswith("#/components/schemas/Paginated"):
                paginated.add(path)
            for code in ("401", "403", "429"):
                assert operation["responses"][code]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/Error"}, (method, path, code)
    assert paginated == {
        "/api/v1/cases/", "/api/v1/health/specs/", "/api/v1/inventory/stores/",
        "/api/v1/inventory/stores/{store_id}/items/", "/api/v1/inventory/stores/{store_id}/runs/",
        "/api/v1/hub/cases/", "/api/v1/hub/cases/{case_id}/messages/",
    }
