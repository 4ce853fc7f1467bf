"""The sandbox tenant: requests with the baggage `tenant=sandbox` read and write the sandbox schema
and nothing else, both ways; the search_path never outlives the request; the baggage is parsed
strictly; `migrate` builds and keeps the schema; caches and outbound calls keep tenants apart."""

from __future__ import annotations

import base64
import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO

import pytest
from asgiref.sync import async_to_sync
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext

from apps.assignment import counters, realtime
from apps.cases.context.clients import HttpContextClient
from apps.cases.models import Case, CaseEvent, Message, Queue
from apps.core import demo as core_demo
from apps.core import sandbox_schema
from apps.core.errors import InvalidInput
from apps.core.progress import Progress
from apps.core.tenancy import (
    PRODUCTION,
    SANDBOX,
    SANDBOX_SCHEMA,
    sandbox_demo_logins,
    tenant_activate,
    tenant_current,
    tenant_from_baggage,
    tenant_session,
)
from apps.health import leases
from apps.health.checks.network import http_client
from apps.merchants import demo as merchants_demo
from tests.factories.accounts import MerchantUserFactory, UserFactory
from tests.factories.cases import REFUND_SCHEMA, QueueFactory, make_case

CASES = "/api/v1/cases/"
HUB = "/api/v1/hub/"
SANDBOX_BAGGAGE = {"HTTP_BAGGAGE": "tenant=sandbox"}
# Tables the migrations fill (role groups, beat schedules) or post-migrate handlers own.
KEEP = {"django_migrations", "django_content_type", "auth_permission", "auth_group", "auth_group_permissions"}


def basic(username: str, password: str = "pass") -> dict[str, str]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def search_path() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW search_path")
        return cursor.fetchone()[0]


def rows(schema: str, table: str, where: str = "TRUE", params=()) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT count(*) FROM "{schema}"."{table}" WHERE {where}', params)
        return cursor.fetchone()[0]


def sandbox_truncate() -> None:
    """Empty what tests wrote in the sandbox: a flush between transactional tests only sees
    production's tables."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [SANDBOX_SCHEMA])
        tables = [t for (t,) in cursor.fetchall() if t not in KEEP and not t.startswith("django_celery_beat")]
        cursor.execute("TRUNCATE " + ", ".join(f'"{SANDBOX_SCHEMA}"."{t}"' for t in tables) + " CASCADE")


@pytest.fixture(autouse=True)
def fast_passwords(settings):
    # Requests here sign in with Basic auth, each checking a password hash.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def empty_sandbox(db):
    """The sandbox as `migrate` left it: what other tests committed there (seed_demo behind a live
    server) stays, since the flush between transactional tests only sees production's tables."""
    sandbox_truncate()


@pytest.fixture
def sandbox_clean(transactional_db):
    sandbox_truncate()
    yield
    sandbox_truncate()


@pytest.fixture
def sandbox_agent(empty_sandbox):
    """An agent login and the refunds queue, both in the sandbox only."""
    with tenant_activate(SANDBOX):
        QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)
        return UserFactory(username="sandbox-agent", roles=["agent"])


# Baggage ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("header", [
    "tenant=sandbox",
    "  tenant = sandbox\t",
    "userId=alice,tenant=sandbox,serverNode=DF%2028",
    "tenant=sandbox;ttl=30;flag",
    "a=1 , tenant=sandbox ; p = v ;q, b=",
    "tenant=%73andbox",
    "tenant=sandbox,tenant=sandbox",
])
def test_baggage_naming_the_sandbox_in_any_valid_form(header):
    assert tenant_from_baggage(header) == SANDBOX


@pytest.mark.parametrize("header", [None, "", "  ", "userId=alice", "tenant=production", "Tenant=sandbox"])
def test_baggage_without_the_sandbox_is_production(header):
    assert tenant_from_baggage(header) == PRODUCTION


@pytest.mark.parametrize("header", [
    "tenant",
    "=sandbox",
    "tenant=sandbox,,a=1",
    "tenant=sandbox,",
    "tenant=sand box",
    'tenant="sandbox"',
    "tenant=sandbox;",
    "tenant=sandbox;=x",
    "tenänt=sandbox",
    "tenant=sandbox,tenant=production",
    "a=" + "x" * 8200,
    ",".join(f"k{n}=v" for n in range(181)),
])
def test_malformed_baggage_is_a_field_error(header):
    with pytest.raises(InvalidInput) as refused:
        tenant_from_baggage(header)
    assert refused.value.errors["baggage"]


def test_an_unknown_tenant_is_refused():
    with pytest.raises(InvalidInput) as refused:
        tenant_from_baggage("tenant=staging")
    assert refused.value.code == "unknown_tenant" and "staging" in refused.value.errors["baggage"][0]


@pytest.mark.django_db
@pytest.mark.parametrize(("header", "code"), [
    ("tenant=sandbox,,", "invalid_baggage"),
    ("tenant=staging", "unknown_tenant"),
    ("a b=c", "invalid_baggage"),
])
def test_the_api_answers_bad_baggage_with_a_400_naming_the_header(api_client, header, code):
    UserFactory(username="prod-agent", roles=["agent"])
    response = api_client.get(CASES, HTTP_BAGGAGE=header, **basic("prod-agent"))
    assert response.status_code == 400
    assert response.json()["code"] == code and response.json()["errors"]["baggage"]


@pytest.mark.django_db
def test_a_disabled_sandbox_refuses_sandbox_requests(api_client, settings):
    settings.SANDBOX_ENABLED = False
    UserFactory(username="prod-agent", roles=["agent"])
    response = api_client.get(CASES, **SANDBOX_BAGGAGE, **basic("prod-agent"))
    assert response.status_code == 400 and response.json()["errors"]["baggage"]
    assert api_client.get(CASES, **basic("prod-agent")).status_code == 200


@pytest.mark.django_db
def test_the_admin_serves_production_only(client):
    assert client.get("/admin/login/").status_code == 200
    refused = client.get("/admin/login/", **SANDBOX_BAGGAGE)
    assert refused.status_code == 400 and b"production only" in refused.content


# Both ways --------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_a_case_created_in_the_sandbox_stays_in_the_sandbox(api_client, sandbox_agent):
    UserFactory(username="prod-agent", roles=["agent"])
    created = api_client.post(CASES, {"queue": "refunds", "fields": {"order_id": "S-1"}}, format="json",
                              **SANDBOX_BAGGAGE, **basic("sandbox-agent"))
    assert created.status_code == 201, created.content
    case_id = created.json()["id"]

    listed = api_client.get(CASES, **SANDBOX_BAGGAGE, **basic("sandbox-agent")).json()
    assert [c["id"] for c in listed["results"]] == [case_id]
    detail = api_client.get(f"{CASES}{case_id}/", **SANDBOX_BAGGAGE, **basic("sandbox-agent"))
    assert detail.status_code == 200

    assert api_client.get(CASES, **basic("prod-agent")).json()["count"] == 0
    assert api_client.get(f"{CASES}{case_id}/", **basic("prod-agent")).status_code == 404
    # The sandbox's logins are its own: production does not know them, and the other way round.
    assert api_client.get(CASES, **basic("sandbox-agent")).status_code == 401
    assert api_client.get(CASES, **SANDBOX_BAGGAGE, **basic("prod-agent")).status_code == 401

    assert rows(SANDBOX_SCHEMA, "cases_case", "id = %s", [case_id]) == 1
    assert rows(SANDBOX_SCHEMA, "cases_caseevent", "case_id = %s", [case_id]) == 1
    assert rows("public", "cases_case", "id = %s", [case_id]) == 0
    assert not Case.objects.filter(pk=case_id).exists() and not Queue.objects.filter(slug="refunds").exists()


@pytest.mark.django_db
def test_a_production_case_is_invisible_to_the_sandbox(api_client, sandbox_agent):
    UserFactory(username="prod-agent", roles=["agent"])
    case = make_case(queue=QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA),
                     fields={"order_id": "P-1"})
    assert api_client.get(f"{CASES}{case.pk}/", **basic("prod-agent")).status_code == 200

    assert api_client.get(CASES, **SANDBOX_BAGGAGE, **basic("sandbox-agent")).json()["count"] == 0
    detail = api_client.get(f"{CASES}{case.pk}/", **SANDBOX_BAGGAGE, **basic("sandbox-agent"))
    assert detail.status_code == 404
    assert rows("public", "cases_case", "id = %s", [case.pk]) == 1
    assert rows(SANDBOX_SCHEMA, "cases_case", "id = %s", [case.pk]) == 0


@pytest.mark.django_db
def test_a_sandbox_merchant_opens_a_case_with_its_message_in_the_sandbox_only(api_client, settings,
                                                                              empty_sandbox):
    settings.CASEHUB_HUB_QUEUE = "general"
    with tenant_activate(SANDBOX):
        member = MerchantUserFactory(user__username="sandbox-shop")
        QueueFactory(slug="general")
    login = {"username": "sandbox-shop", "password": "pass"}
    assert api_client.post(f"{HUB}auth/login/", login, format="json").status_code == 401
    token = api_client.post(f"{HUB}auth/login/", login, format="json", **SANDBOX_BAGGAGE).json()["token"]
    hub = {"HTTP_AUTHORIZATION": f"Token {token}", **SANDBOX_BAGGAGE}

    opened = api_client.post(f"{HUB}cases/", {"subject": "Till broken", "text": "It beeps."},
                             format="json", **hub)
    assert opened.status_code == 201, opened.content
    case_id = opened.json()["id"]
    assert [c["id"] for c in api_client.get(f"{HUB}cases/", **hub).json()["results"]] == [case_id]
    # The sandbox's token means nothing to production.
    assert api_client.get(f"{HUB}cases/", HTTP_AUTHORIZATION=f"Token {token}").status_code == 401

    merchant = member.merchant.pk
    assert rows(SANDBOX_SCHEMA, "merchants_merchant", "id = %s", [merchant]) == 1
    assert rows(SANDBOX_SCHEMA, "cases_message", "case_id = %s", [case_id]) == 1
    assert rows(SANDBOX_SCHEMA, "knox_authtoken") == 1
    assert rows("public", "merchants_merchant") == 0 and rows("public", "cases_message") == 0
    assert rows("public", "cases_case", "id = %s", [case_id]) == 0 and rows("public", "knox_authtoken") == 0
    assert not Message.objects.exists()


@pytest.mark.django_db
def test_asgi_requests_reach_the_sandbox_too(sandbox_agent):
    with tenant_activate(SANDBOX):
        case = make_case(queue=Queue.objects.get(slug="refunds"), fields={"order_id": "A-1"})
    client = AsyncClient()
    headers = {"baggage": "tenant=sandbox", "authorization": basic("sandbox-agent")["HTTP_AUTHORIZATION"]}
    response = async_to_sync(client.get)(CASES, headers=headers)
    assert response.status_code == 200 and [c["id"] for c in response.json()["results"]] == [str(case.pk)]
    assert async_to_sync(client.get)(f"{CASES}{case.pk}/", headers={"authorization": headers["authorization"]}
                                     ).status_code == 401
    assert search_path() == '"$user", public'


# The search_path never outlives its request --------------------------------------------------------

def test_a_persistent_connection_is_production_again_after_a_sandbox_request(api_client, sandbox_clean):
    with tenant_activate(SANDBOX):
        sandbox_case = make_case(queue=QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA),
                                 fields={"order_id": "S-1"})
        UserFactory(username="sandbox-agent", roles=["agent"])
    production_case = make_case(queue=QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA),
                                fields={"order_id": "P-1"})
    UserFactory(username="prod-agent", roles=["agent"])
    production_path = search_path()
    raw = connection.connection
    assert not connection.in_atomic_block

    seen = api_client.get(CASES, **SANDBOX_BAGGAGE, **basic("sandbox-agent")).json()
    assert [c["id"] for c in seen["results"]] == [str(sandbox_case.pk)]
    assert connection.connection is raw and search_path() == production_path
    # A refused sandbox write (400 from the view) ends its transaction the same way.
    refused = api_client.post(CASES, {"queue": "refunds", "fields": {}}, format="json",
                              **SANDBOX_BAGGAGE, **basic("sandbox-agent"))
    assert refused.status_code == 400 and search_path() == production_path

    seen = api_client.get(CASES, **basic("prod-agent")).json()
    assert [c["id"] for c in seen["results"]] == [str(production_case.pk)]
    assert connection.connection is raw and search_path() == production_path


@pytest.mark.django_db
def test_inside_an_open_transaction_the_previous_path_comes_back(sandbox_agent):
    production_path = search_path()
    with tenant_activate(SANDBOX):
        assert search_path().startswith("sandbox, ")
        assert tenant_current() == SANDBOX
    assert search_path() == production_path and tenant_current() == PRODUCTION
    with pytest.raises(ZeroDivisionError), tenant_activate(SANDBOX):
        1 / 0  # noqa: B018
    assert search_path() == production_path and tenant_current() == PRODUCTION


@pytest.mark.django_db
def test_production_requests_cost_no_extra_query(api_client):
    UserFactory(username="prod-agent", roles=["agent"])
    with CaptureQueriesContext(connection) as plain:
        assert api_client.get(CASES, **basic("prod-agent")).status_code == 200
    with CaptureQueriesContext(connection) as other_baggage:
        response = api_client.get(CASES, HTTP_BAGGAGE="userId=alice,tenant=production", **basic("prod-agent"))
    assert response.status_code == 200
    assert len(other_baggage) == len(plain)
    assert not [q for q in other_baggage.captured_queries if "search_path" in q["sql"]]


def test_work_left_for_the_commit_runs_in_the_sandbox(sandbox_clean):
    seen = []

    def after_commit():
        seen.append((tenant_current(), Queue.objects.filter(slug="hooked").exists(), search_path()))

    with tenant_activate(SANDBOX):
        QueueFactory(slug="hooked")
        transaction.on_commit(after_commit)
        assert seen == []
    assert seen == [(SANDBOX, True, 'sandbox, "$user", public')]
    assert search_path() == '"$user", public' and tenant_current() == PRODUCTION


# Caches -----------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_cache_entries_are_kept_apart_per_tenant():
    cache.set("greeting", "production")
    with tenant_activate(SANDBOX):
        assert cache.get("greeting") is None
        cache.set("greeting", "sandbox")
    assert cache.get("greeting") == "production"
    with tenant_activate(SANDBOX):
        assert cache.get("greeting") == "sandbox"


@pytest.mark.django_db
def test_content_types_are_cached_per_tenant():
    production = ContentType.objects.get_for_model(Case)
    try:
        with tenant_activate(SANDBOX):
            # Renumber the sandbox's row: the schemas number their content types independently.
            ContentType.objects.clear_cache()
            ContentType.objects.filter(app_label="cases", model="case").delete()
            sandbox = ContentType.objects.get_for_model(Case)
        assert sandbox.pk != production.pk
        assert rows(SANDBOX_SCHEMA, "django_content_type", "id = %s AND model = 'case'", [sandbox.pk]) == 1
        assert ContentType.objects.get_for_model(Case).pk == production.pk
        with tenant_activate(SANDBOX):
            assert ContentType.objects.get_for_model(Case).pk == sandbox.pk
            assert ContentType.objects.get_for_id(sandbox.pk).model == "case"
    finally:
        ContentType.objects.clear_cache()  # the test's rollback renumbers the sandbox back


@pytest.mark.django_db
def test_redis_counters_keys_and_channel_groups_are_kept_apart_per_tenant(redis_client):
    """Each schema numbers its agents and checks from 1: what is kept by id outside PostgreSQL
    (loads, flags, workspace states and groups, check leases) must not be shared."""
    counters.counters_rebuild({1: 3})
    counters.flag_set_once("assign:probe", 10_000)
    with tenant_activate(SANDBOX):
        assert counters.counters_read([1]) == (False, {}, {})
        assert counters.flag_set_once("assign:probe", 10_000)
        counters.counters_rebuild({1: 7})
        assert counters.counters_loads() == {1: 7}
        sandbox_names = (realtime.agent_group(1), leases.key(1))
    assert counters.counters_loads() == {1: 3}
    assert counters.counters_read([1])[:2] == (True, {1: 3})
    assert realtime.agent_group(1) == "agent.1" and sandbox_names[0] == "sandbox.agent.1"
    assert leases.key(1) != sandbox_names[1]


# Outbound HTTP ----------------------------------------------------------------------------------

class _RecordingHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.requests.append(dict(self.headers.items()))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def recording_server():
    """A loopback HTTP server that keeps the headers of every request it gets."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingHandler)
    server.daemon_threads, server.requests = True, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.django_db
@pytest.mark.parametrize("client", [http_client, lambda: HttpContextClient()._http],
                         ids=["health checks", "context panel"])
def test_outbound_calls_from_the_sandbox_carry_no_baggage(client):
    with recording_server() as (server, url), tenant_activate(SANDBOX):
        client().get(url, headers={"baggage": "tenant=sandbox,userId=alice", "X-Probe": "1"})
    [headers] = server.requests
    assert headers["X-Probe"] == "1"
    assert "baggage" not in {name.lower() for name in headers}


# Migrate ----------------------------------------------------------------------------------------

def schema_shape(schema: str) -> dict[str, list]:
    """Tables, columns, indexes, constraints, triggers and functions of `schema`, printed with only
    that schema on the path: a reference into any other schema would show its schema's name (index
    and trigger definitions always name their own table's schema, which is left out)."""
    queries = {
        "columns": """SELECT table_name, column_name, data_type, is_nullable, column_default, is_identity
                      FROM information_schema.columns WHERE table_schema = %(s)s""",
        "indexes": """SELECT tablename, indexname, replace(indexdef, %(own)s, ' ON ') FROM pg_indexes
                      WHERE schemaname = %(s)s""",
        "constraints": """SELECT cl.relname, co.conname, pg_get_constraintdef(co.oid) FROM pg_constraint co
                          JOIN pg_class cl ON cl.oid = co.conrelid
                          JOIN pg_namespace n ON n.oid = cl.relnamespace WHERE n.nspname = %(s)s""",
        "triggers": """SELECT cl.relname, t.tgname, replace(pg_get_triggerdef(t.oid), %(own)s, ' ON ')
                       FROM pg_trigger t
                       JOIN pg_class cl ON cl.oid = t.tgrelid JOIN pg_namespace n ON n.oid = cl.relnamespace
                       WHERE n.nspname = %(s)s AND NOT t.tgisinternal""",
        "functions": """SELECT p.proname, p.prosrc FROM pg_proc p
                        JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %(s)s""",
        "migrations": "SELECT app, name FROM django_migrations",
        "content_types": "SELECT app_label, model FROM django_content_type",
        "role_permissions": """SELECT g.name, ct.app_label, p.codename FROM auth_group_permissions gp
                               JOIN auth_group g ON g.id = gp.group_id
                               JOIN auth_permission p ON p.id = gp.permission_id
                               JOIN django_content_type ct ON ct.id = p.content_type_id""",
    }
    shape = {}
    with transaction.atomic(), connection.cursor() as cursor:
        # SET LOCAL outlives a savepoint: the test's own transaction gets its path back after.
        cursor.execute("SELECT current_setting('search_path'), set_config('search_path', %s, true)", [schema])
        previous = cursor.fetchone()[0]
        for name, sql in queries.items():
            cursor.execute(sql, {"s": schema, "own": f" ON {schema}."})
            shape[name] = sorted(cursor.fetchall(), key=repr)
        cursor.execute("SELECT set_config('search_path', %s, true)", [previous])
    return shape


@pytest.mark.django_db
def test_migrate_built_the_sandbox_with_the_shape_of_production():
    sandbox, production = schema_shape(SANDBOX_SCHEMA), schema_shape("public")
    assert sandbox["columns"] and sandbox == production
    # Triggers fire the sandbox's own functions, on the sandbox's rows.
    with tenant_activate(SANDBOX):
        case = make_case(queue=QueueFactory(slug="triggers"))
        event = CaseEvent.objects.get(case=case)
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            CaseEvent.objects.filter(pk=event.pk).update(kind="note")


@pytest.mark.django_db
def test_migrate_again_leaves_the_sandbox_as_it_is():
    before = schema_shape(SANDBOX_SCHEMA)
    with CaptureQueriesContext(connection) as queries:
        call_command("migrate", verbosity=0, stdout=StringIO())
    ddl = [q["sql"] for q in queries.captured_queries
           if q["sql"].lstrip().upper().startswith(("CREATE TABLE", "ALTER", "DROP", "CREATE INDEX"))]
    assert ddl == []
    assert sandbox_schema.sandbox_migrate(verbosity=0) == 0
    assert schema_shape(SANDBOX_SCHEMA) == before


@pytest.mark.slow
@pytest.mark.django_db
def test_applying_the_migrations_builds_the_same_sandbox_as_the_replay():
    """The test database's sandbox was replayed from production's statements; a database whose
    production was migrated before the sandbox existed gets it through the migrations."""
    replayed = schema_shape(SANDBOX_SCHEMA)
    try:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP SCHEMA "{SANDBOX_SCHEMA}" CASCADE')
        assert sandbox_schema.sandbox_migrate(verbosity=0) == len(replayed["migrations"])
        assert schema_shape(SANDBOX_SCHEMA) == replayed
    finally:
        ContentType.objects.clear_cache()  # the test's rollback brings the replayed schema back


@pytest.mark.slow
@pytest.mark.django_db
def test_seed_demo_seeds_the_sandbox_with_its_own_logins(api_client):
    out = StringIO()
    call_command("seed_demo", no_progress=True, stdout=out)
    summary = dict(line.split() for line in out.getvalue().splitlines()[1:])
    assert int(summary["sandbox.users"]) == rows(SANDBOX_SCHEMA, "auth_user") > 0
    assert int(summary["sandbox.merchants"]) == rows(SANDBOX_SCHEMA, "merchants_merchant") > 0
    assert rows(SANDBOX_SCHEMA, "cases_case") > 0
    assert rows(SANDBOX_SCHEMA, "auth_user", "username NOT LIKE 'sandbox-%%'") == 0
    assert rows("public", "auth_user", "username LIKE 'sandbox-%%'") == 0

    login = f"{HUB}auth/login/"
    sandbox_login = {"username": "sandbox-merchant1", "password": "merchant"}
    assert api_client.post(login, sandbox_login, format="json", **SANDBOX_BAGGAGE).status_code == 200
    assert api_client.post(login, sandbox_login, format="json").status_code == 401
    production_login = {"username": "merchant1", "password": "merchant"}
    assert api_client.post(login, production_login, format="json", **SANDBOX_BAGGAGE).status_code == 401

    # Seeding again finds the logins it made (the whole command twice is test_foundation's).
    first = {t: rows(SANDBOX_SCHEMA, t) for t in ("auth_user", "merchants_merchantuser", "auth_user_groups")}
    with tenant_session(SANDBOX), sandbox_demo_logins():
        core_demo.seed(progress=Progress(enabled=False))
        merchants_demo.seed(progress=Progress(enabled=False))
    assert {t: rows(SANDBOX_SCHEMA, t) for t in first} == first
    assert rows(SANDBOX_SCHEMA, "auth_user", "username NOT LIKE 'sandbox-%%'") == 0
