"""What each role may do, page by page: every admin changelist / add / change / delete URL and
every API endpoint, with the answer expected for each role (apps.core.roles), and the rules that
hold per object (an agent's own presence, a merchant's own stores, merchants kept out of admin)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from rest_framework.test import APIClient

from apps.assignment.models import Agent, AgentPresenceChange, AgentQueue, Offer, Presence
from apps.cases.models import CaseEvent, SignalOutcome
from apps.cases.services.case_stats import case_stats_fold
from apps.inventory import services as inventory_services
from apps.inventory.models import ItemRejection, OosModel, PriceGuardrail
from apps.merchants.models import MerchantUser
from tests.factories.accounts import AgentFactory, MerchantUserFactory, UserFactory
from tests.factories.cases import AttachmentFactory, MessageFactory, QueueFactory, make_case
from tests.factories.context import ContextRecordFactory
from tests.factories.health import CheckResultFactory, HealthSpecFactory
from tests.factories.inventory import CatalogItemFactory, StoreFactory, feed_body

pytestmark = pytest.mark.django_db

STAFF = ("agent", "ops", "queue-config-editor")
OUTSIDERS = ("anonymous", "merchant", "staff-merchant")

# What the admin offers each staff role, per model: l = changelist, a = add page, v = change
# page read-only, e = change page with Save, d = delete page. Any page not listed answers 403;
# anonymous users and merchant users (even one made staff) are sent to the login page (302).
ADMIN_MATRIX: dict[str, dict[str, str]] = {
    # Another agent's row: an agent sees it; their own row is tested below.
    "assignment.agent": {"agent": "lv", "ops": "laed"},
    "assignment.agentqueue": {"agent": "lv", "ops": "laed"},
    # Written by a trigger on the agent row only.
    "assignment.agentpresencechange": {"agent": "lv", "ops": "lv"},
    # Written by the engine, the agents' answers and the expiry job only.
    "assignment.offer": {"agent": "lv", "ops": "lv"},
    "auth.group": {"ops": "lv"},
    "auth.user": {"ops": "lv"},
    "axes.accessattempt": {"ops": "lvd"},  # ops lift a sign-in lockout by deleting it
    "axes.accessfailurelog": {"ops": "lv"},
    "axes.accesslog": {"ops": "lv"},
    "cases.case": {"agent": "lae", "ops": "lae"},  # never deleted: closed instead
    "cases.casestats": {"agent": "lv", "ops": "lv"},
    "cases.queue": {"agent": "lv", "ops": "laed", "queue-config-editor": "le"},
    # The active version is immutable and not deletable; a new version is "added".
    "cases.queueconfig": {"agent": "lv", "ops": "lav", "queue-config-editor": "lav"},
    "cases.signaloutcome": {"agent": "lv", "ops": "lv"},
    # Written by fetches only: ops refresh, mark stale, bust a type or delete; agents look.
    "context.contextrecord": {"agent": "lv", "ops": "lvd"},
    "django_celery_beat.clockedschedule": {"ops": "laed"},
    "django_celery_beat.crontabschedule": {"ops": "laed"},
    "django_celery_beat.intervalschedule": {"ops": "laed"},
    "django_celery_beat.periodictask": {"ops": "laed"},
    "django_celery_beat.solarschedule": {"ops": "laed"},
    "health.checkresult": {"ops": "lvd"},
    "health.healthspec": {"ops": "laed"},
    "inventory.catalogitem": {"agent": "lv", "ops": "laed"},
    "inventory.ingestionrun": {"agent": "lv", "ops": "led"},
    "inventory.itemrejection": {"agent": "lv", "ops": "lvd"},
    "inventory.oosmodel": {"agent": "lv", "ops": "led"},
    "inventory.priceguardrail": {"agent": "lv", "ops": "laed"},
    "inventory.shoppersignal": {"agent": "lv", "ops": "lavd"},
    "inventory.store": {"agent": "lv", "ops": "laed"},
    "merchants.merchant": {"agent": "lv", "ops": "laed"},
    "merchants.merchantuser": {"agent": "lv", "ops": "laed"},
}


@pytest.fixture
def world():
    """One object of every admin-registered model, and a user per role."""
    queue = QueueFactory(slug="roles-q")
    case = make_case(queue=queue, subject="a case")
    case_stats_fold(list(CaseEvent.objects.filter(case=case)))
    own_merchant = MerchantUserFactory(user__username="merchant-user")
    store = StoreFactory(merchant=own_merchant.merchant)
    other_store = StoreFactory()
    known = CatalogItemFactory(merchant=store.merchant, sku="KNOWN")
    run = inventory_services.feed_submit_json(
        store=store, body=feed_body([{"sku": "KNOWN", "price": 1.0}, {"sku": "UNKNOWN", "price": 1.0}]),
        enqueue=False)
    inventory_services.ingestion_run_process(run_id=run.pk)
    other_run = inventory_services.feed_submit_json(store=other_store, body=feed_body([]), enqueue=False)
    spec = HealthSpecFactory(name="roles-spec")
    staff_merchant = MerchantUserFactory(user__username="staff-merchant")
    staff_merchant.user.is_staff = True
    staff_merchant.user.save()
    attempt = {"username": "x", "ip_address": "10.0.0.1", "user_agent": "ua", "http_accept": "*/*",
               "path_info": "/admin/login/"}
    users = {
        "agent": AgentFactory(user=UserFactory(username="agent-user", roles=["agent"])).user,
        "ops": UserFactory(username="ops-user", roles=["ops"]),
        "queue-config-editor": UserFactory(username="editor-user", roles=["queue-config-editor"]),
        "merchant": own_merchant.user,
        "staff-merchant": staff_merchant.user,
    }
    someone = AgentFactory(display_name="Someone Else")
    objects = {
        "assignment.agent": someone,
        "assignment.agentqueue": AgentQueue.objects.create(agent=someone, queue=queue, priority=2),
        "assignment.agentpresencechange": AgentPresenceChange.objects.create(
            agent=someone, presence="away", changed_at=timezone.now()),
        "assignment.offer": Offer.objects.create(case=case, agent=someone, created_at=timezone.now(),
                                                 expires_at=timezone.now() + timedelta(minutes=1)),
        "auth.group": Group.objects.get(name="ops"),
        "auth.user": UserFactory(username="bystander"),
        "axes.accessattempt": AccessAttempt.objects.create(
            **attempt, get_data="", post_data="", failures_since_start=1),
        "axes.accessfailurelog": AccessFailureLog.objects.create(**attempt),
        "axes.accesslog": AccessLog.objects.create(**attempt),
        "cases.case": case,
        "cases.casestats": case.stats,
        "cases.queue": queue,
        "cases.queueconfig": queue.configs.get(is_active=True),
        "cases.signaloutcome": SignalOutcome.objects.create(
            delivery_ref="d-1", signal_type="late", queue=queue, group="treatment"),
        "context.contextrecord": ContextRecordFactory(key="D-roles"),
        "django_celery_beat.clockedschedule": ClockedSchedule.objects.create(
            clocked_time="2030-01-01T00:00Z"),
        "django_celery_beat.crontabschedule": CrontabSchedule.objects.create(minute="5"),
        "django_celery_beat.intervalschedule": IntervalSchedule.objects.create(every=7, period="minutes"),
        "django_celery_beat.periodictask": PeriodicTask.objects.create(
            name="roles-task", task="apps.health.tasks.noop",
            interval=IntervalSchedule.objects.create(every=9, period="minutes")),
        "django_celery_beat.solarschedule": SolarSchedule.objects.create(
            event="sunrise", latitude=52.5, longitude=13.4),
        "health.checkresult": CheckResultFactory(health_check=spec.checks.get()),
        "health.healthspec": spec,
        "inventory.catalogitem": known,
        "inventory.ingestionrun": run,
        "inventory.itemrejection": ItemRejection.objects.get(sku="UNKNOWN"),
        "inventory.oosmodel": OosModel.objects.create(
            version=999, algorithm="test", features=[], blob=b"", train_samples=1, test_samples=1,
            accuracy=0.5),
        "inventory.priceguardrail": PriceGuardrail.objects.create(
            store=store, category="bakery", max_ratio=2),
        "inventory.shoppersignal": inventory_services.shopper_signal_record(store=store, sku="KNOWN",
                                                                           found=True),
        "inventory.store": store,
        "merchants.merchant": store.merchant,
        "merchants.merchantuser": own_merchant,
    }
    return {"users": users, "objects": objects, "queue": queue, "case": case, "store": store,
            "offer": objects["assignment.offer"],
            "hub_case": make_case(queue=queue, subject="hub", merchant_ref=own_merchant.merchant.external_id),
            "other_store": other_store, "run": run, "other_run": other_run, "spec": spec}


def clients(world) -> dict[str, Client]:
    result = {"anonymous": Client()}
    for role, user in world["users"].items():
        result[role] = Client()
        result[role].force_login(user)
    return result


def admin_urls(label: str, obj) -> dict[str, str]:
    app, model = label.split(".")
    base = f"/admin/{app}/{model}/"
    pk = obj.pk
    return {"l": base, "a": f"{base}add/", "c": f"{base}{pk}/change/", "d": f"{base}{pk}/delete/"}


def test_every_admin_page_is_in_the_matrix():
    assert sorted(m._meta.label_lower for m in admin.site._registry) == sorted(ADMIN_MATRIX)


def test_admin_pages_answer_each_role_as_the_matrix_says(world):
    # One pass over the whole matrix (the world is costly to build): the diff lists every miss.
    by_role = clients(world)
    actual, expected = {}, {}
    for label, allowed_by_role in ADMIN_MATRIX.items():
        for page, url in admin_urls(label, world["objects"][label]).items():
            for role, client in by_role.items():
                key = (label, page, role)
                response = client.get(url)
                if page == "c" and response.status_code == 200:
                    actual[key] = "e" if 'name="_save"' in response.content.decode() else "v"
                else:
                    actual[key] = response.status_code
                allowed = allowed_by_role.get(role, "")
                if role in OUTSIDERS:
                    expected[key] = 302
                elif page == "c":
                    expected[key] = next((x for x in "ev" if x in allowed), 403)
                else:
                    expected[key] = 200 if page in allowed else 403
    assert {k: v for k, v in actual.items() if expected[k] != v} == {}
    assert actual == expected


def test_admin_ops_pages_answer_each_role(world):
    store, run, case = world["store"], world["run"], world["case"]
    attachment = AttachmentFactory(message=MessageFactory(case=case))
    pages = {
        # url: {role: status} for the staff roles; outsiders always go to the login page.
        "/admin/": {"agent": 200, "ops": 200, "queue-config-editor": 200},
        f"/admin/cases/case/add/?queue={world['queue'].pk}": {"agent": 200, "ops": 200,
                                                              "queue-config-editor": 403},
        f"/admin/cases/queueconfig/add/?queue={world['queue'].pk}": {"agent": 403, "ops": 200,
                                                                     "queue-config-editor": 200},
        # The queue config editor: editors and ops work on drafts; renaming a field publishes (ops).
        **{f"/admin/cases/queueconfig/queue/{world['queue'].pk}/{page}/": {
            "agent": 403, "ops": 200, "queue-config-editor": 200} for page in ("editor", "versions", "diff")},
        f"/admin/cases/queueconfig/queue/{world['queue'].pk}/rename/": {
            "agent": 403, "ops": 200, "queue-config-editor": 403},
        # Publishing and rolling back are POSTs, for ops only.
        **{f"/admin/cases/queueconfig/{world['objects']['cases.queueconfig'].pk}/{action}/": {
            "agent": 403, "ops": 405, "queue-config-editor": 403} for action in ("publish", "rollback")},
        "/admin/health/healthspec/dashboard/": {"agent": 403, "ops": 200, "queue-config-editor": 403},
        "/admin/cases/casestats/dashboard/": {"agent": 403, "ops": 200, "queue-config-editor": 403},
        "/admin/context/contextrecord/bust/": {"agent": 403, "ops": 200, "queue-config-editor": 403},
        # The board is for ops (a permission of its own: agents see agents, not the board).
        "/admin/assignment/agent/board/": {"agent": 403, "ops": 200, "queue-config-editor": 403},
        # Adding agents (a CSV, or one invitation) is for ops.
        "/admin/assignment/agent/import/": {"agent": 403, "ops": 200, "queue-config-editor": 403},
        "/admin/assignment/agent/invite/": {"agent": 403, "ops": 200, "queue-config-editor": 403},
        # The workspace is an agent's own: staff without an agent profile are refused.
        "/admin/assignment/workspace/": {"agent": 200, "ops": 403, "queue-config-editor": 403},
        "/admin/inventory/store/review-queue/": {"agent": 200, "ops": 200, "queue-config-editor": 403},
        f"/admin/inventory/store/{store.pk}/csv-upload/": {"agent": 403, "ops": 200,
                                                          "queue-config-editor": 403},
        f"/admin/inventory/store/{store.pk}/item-lookup/": {"agent": 200, "ops": 200,
                                                           "queue-config-editor": 403},
        f"/admin/inventory/ingestionrun/{run.pk}/payload/": {"agent": 200, "ops": 200,
                                                            "queue-config-editor": 403},
        # A case's thread: whoever may change the case replies (POST only), whoever sees it downloads.
        f"/admin/cases/case/{case.pk}/reply/": {"agent": 405, "ops": 405, "queue-config-editor": 403},
        f"/admin/cases/case/{case.pk}/attachments/{attachment.pk}/": {"agent": 200, "ops": 200,
                                                                      "queue-config-editor": 403},
    }
    actual = {(role, url): client.get(url).status_code for role, client in clients(world).items()
              for url in pages}
    expected = {(role, url): pages[url].get(role, 302) for role in (*OUTSIDERS, *STAFF) for url in pages}
    assert actual == expected


def test_only_ops_may_start_training_or_decide_held_prices(world):
    by_role = clients(world)
    train = {role: by_role[role].post("/admin/inventory/oosmodel/train/").status_code for role in STAFF}
    assert train == {"agent": 403, "ops": 302, "queue-config-editor": 403}
    decide = {role: by_role[role].post("/admin/inventory/store/review-queue/", {"decision": "approve"})
              .status_code for role in STAFF}
    assert decide == {"agent": 403, "ops": 302, "queue-config-editor": 403}


# The API, endpoint by endpoint. Writes whose outcome would depend on the order of the calls send
# an invalid body: 400 then means the permission check let the caller through.
def api_rows(world) -> list[tuple[str, str, dict | None, dict[str, int]]]:
    case, store, other, spec = world["case"], world["store"], world["other_store"], world["spec"]
    cases, inv, health = "/api/v1/cases/", "/api/v1/inventory/", "/api/v1/health/"
    feed = {"items": [{"sku": "KNOWN", "price": 1.0}]}
    staff_only = {"merchant": 403, "queue-config-editor": 403}
    hub, hub_case = "/api/v1/hub/", world["hub_case"]
    not_merchant = {"queue-config-editor": 403, "agent": 403, "ops": 403}
    return [
        ("get", cases, None, {**staff_only, "agent": 200, "ops": 200}),
        ("get", f"{cases}{case.pk}/", None, {**staff_only, "agent": 200, "ops": 200}),
        ("post", cases, {"queue": "roles-q", "subject": "new"}, {**staff_only, "agent": 201, "ops": 201}),
        ("post", f"{cases}{case.pk}/notes/", {"body": "n"}, {**staff_only, "agent": 201, "ops": 201}),
        # Queue config as YAML: everyone on staff reads it; editors save drafts, only ops publish.
        ("get", "/api/v1/queues/roles-q/config.yaml", None,
         {"merchant": 403, "queue-config-editor": 200, "agent": 200, "ops": 200}),
        ("put", "/api/v1/queues/roles-q/config.yaml", {},
         {"merchant": 403, "queue-config-editor": 400, "agent": 403, "ops": 400}),
        ("put", "/api/v1/queues/roles-q/config.yaml?publish=1", {},
         {"merchant": 403, "queue-config-editor": 403, "agent": 403, "ops": 400}),
        ("post", f"{cases}{case.pk}/transition/", {"status": "nope"},
         {**staff_only, "agent": 400, "ops": 400}),
        ("post", f"{cases}{case.pk}/legacy-transfer/", {}, {**staff_only, "agent": 400, "ops": 400}),
        ("post", "/api/v1/signals/", {}, {**staff_only, "agent": 403, "ops": 400}),
        # The mail provider's webhook: its shared secret only, whoever is signed in.
        ("post", "/api/v1/email/inbound/", {}, {**staff_only, "agent": 403, "ops": 403}),
        # Outside systems' change events: their shared secret only, whoever is signed in.
        ("post", "/api/v1/context/events/", {}, {**staff_only, "agent": 403, "ops": 403}),
        # Inventory: a merchant user sees only their own stores; another's answers 404.
        ("get", f"{inv}stores/", None,
         {"merchant": 200, "queue-config-editor": 200, "agent": 200, "ops": 200}),
        ("get", f"{inv}stores/{store.pk}/items/", None,
         {"merchant": 200, "queue-config-editor": 404, "agent": 200, "ops": 200}),
        ("get", f"{inv}stores/{other.pk}/items/", None,
         {"merchant": 404, "queue-config-editor": 404, "agent": 200, "ops": 200}),
        ("get", f"{inv}stores/{store.pk}/items/KNOWN/", None,
         {"merchant": 200, "queue-config-editor": 404, "agent": 200, "ops": 200}),
        ("get", f"{inv}stores/{store.pk}/runs/", None,
         {"merchant": 200, "queue-config-editor": 404, "agent": 200, "ops": 200}),
        ("get", f"{inv}runs/{world['run'].pk}/", None,
         {"merchant": 200, "queue-config-editor": 404, "agent": 200, "ops": 200}),
        ("get", f"{inv}runs/{world['other_run'].pk}/", None,
         {"merchant": 404, "queue-config-editor": 404, "agent": 200, "ops": 200}),
        ("post", f"{inv}stores/{store.pk}/feeds/", feed,
         {"merchant": 202, "queue-config-editor": 404, "agent": 403, "ops": 202}),
        ("post", f"{inv}stores/{other.pk}/feeds/", feed,
         {"merchant": 404, "queue-config-editor": 404, "agent": 403, "ops": 202}),
        ("post", f"{inv}signals/", {"store_id": store.pk, "sku": "KNOWN", "found": True},
         {"merchant": 201, "queue-config-editor": 403, "agent": 403, "ops": 201}),
        ("post", f"{inv}signals/", {"store_id": other.pk, "sku": "KNOWN", "found": True},
         {"merchant": 404, "queue-config-editor": 403, "agent": 403, "ops": 201}),
        # Health: ops only. The gate of a spec whose check has not run yet answers 503.
        ("get", f"{health}status/", None, {**staff_only, "agent": 403, "ops": 200}),
        ("get", f"{health}gate/?spec={spec.name}", None, {**staff_only, "agent": 403, "ops": 503}),
        ("get", f"{health}specs/", None, {**staff_only, "agent": 403, "ops": 200}),
        ("get", f"{health}specs/{spec.name}/", None, {**staff_only, "agent": 403, "ops": 200}),
        ("put", f"{health}specs/new-spec/", {"document": {"checks": []}},
         {**staff_only, "agent": 403, "ops": 201}),
        ("delete", f"{health}specs/{spec.name}/", None, {**staff_only, "agent": 403, "ops": 204}),
        # The agent API acts for the caller's own agent: users without one are refused, and
        # another agent's offer does not exist for them.
        *[(method, f"/api/v1/agent/{path}", body, {**staff_only, "agent": answer, "ops": 403})
          for method, path, body, answer in (
              ("get", "", None, 200),
              ("post", "presence/", {"presence": "asleep"}, 400),
              ("post", "heartbeat/", None, 204),
              ("get", "offers/", None, 200),
              ("post", f"offers/{world['offer'].pk}/accept/", None, 404),
              ("post", f"offers/{world['offer'].pk}/decline/", None, 404),
              ("post", "next-case/", None, 204),  # works no queue: nothing fits
          )],
        # The softphone's call events: its shared secret only, whoever is signed in.
        ("post", "/api/v1/calls/", {}, {**staff_only, "agent": 403, "ops": 403}),
        # The workspace's state poll: its per-tab token only (no session is read), so 401 without one.
        ("get", "/api/v1/agent/state/", None, dict.fromkeys(("anonymous", *STAFF, "merchant"), 401)),
        # The Support Hub: merchant users only, scoped to their merchant. Signing in is open to
        # anyone (an empty body is a 400); logging out revokes the caller's token, so it goes last.
        ("post", f"{hub}auth/login/", {}, dict.fromkeys(("anonymous", *STAFF, "merchant"), 400)),
        ("get", f"{hub}cases/", None, {**not_merchant, "merchant": 200}),
        ("post", f"{hub}cases/", {}, {**not_merchant, "merchant": 400}),
        ("get", f"{hub}cases/{hub_case.pk}/", None, {**not_merchant, "merchant": 200}),
        ("get", f"{hub}cases/{case.pk}/", None, {**not_merchant, "merchant": 404}),  # not theirs
        ("get", f"{hub}cases/{hub_case.pk}/messages/", None, {**not_merchant, "merchant": 200}),
        ("post", f"{hub}cases/{hub_case.pk}/messages/", {"text": ""}, {**not_merchant, "merchant": 400}),
        ("post", f"{hub}cases/{hub_case.pk}/read/", {}, {**not_merchant, "merchant": 200}),
        ("post", f"{hub}cases/{hub_case.pk}/messages/999999/read/", None, {**not_merchant, "merchant": 404}),
        ("get", f"{hub}attachments/999999/", None, {**not_merchant, "merchant": 404}),
        ("post", f"{hub}auth/logout/", None, {**not_merchant, "merchant": 204}),
        ("post", f"{hub}auth/logout-all/", None, {**not_merchant, "merchant": 204}),
    ]


def test_the_api_table_covers_every_route():
    from django.urls import get_resolver

    api = [p for p in get_resolver().url_patterns if str(p.pattern).startswith("api/v1/")]
    routes = sum(len(getattr(p, "url_patterns", [p])) for p in api)
    # cases: list/create, detail, transition, notes, legacy transfer, signals, inbound email,
    # context events, queue config YAML; agent: 9 (with the workspace's state poll, and the
    # softphone's call events at /api/v1/calls/); inventory: 8; health: 4; hub: 9.
    assert routes == 9 + 9 + 8 + 4 + 9, "a new API route needs its rows in api_rows()"


def test_api_endpoints_answer_each_role_as_the_table_says(world):
    # Anonymous first and ops last, so a write that is allowed happens once, after the refusals;
    # rows run in order (the last one deletes the spec the earlier ones read).
    order = ("anonymous", "merchant", "queue-config-editor", "agent", "ops")
    by_role = {role: APIClient() for role in order}
    for role in order[1:]:
        by_role[role].force_authenticate(world["users"][role])
    actual, expected = {}, {}
    for method, url, body, expected_by_role in api_rows(world):
        for role in order:
            call = getattr(by_role[role], method)
            response = (call(url, data=json.dumps(body), content_type="application/json")
                        if body is not None else call(url))
            actual[(method, url, role)] = response.status_code
            expected[(method, url, role)] = expected_by_role.get(role, 401 if role == "anonymous" else None)
    assert {k: v for k, v in actual.items() if expected[k] != v} == {}
    assert actual == expected


def test_store_lists_are_scoped_per_role(world):
    def store_ids(user):
        client = APIClient()
        client.force_authenticate(user)
        return {s["id"] for s in client.get("/api/v1/inventory/stores/").json()["results"]}

    users = world["users"]
    assert store_ids(users["merchant"]) == {world["store"].pk}
    assert store_ids(users["queue-config-editor"]) == set()
    assert {world["store"].pk, world["other_store"].pk} <= store_ids(users["ops"])


# Per object: agents and their own presence ------------------------------------------------------

def agent_form(agent: Agent, **changes) -> dict:
    data = {"user": agent.user_id, "display_name": agent.display_name, "skills": ",".join(agent.skills),
            "capacity": agent.capacity, "presence": agent.presence,
            # The queues-worked inline (none here).
            "queue_links-TOTAL_FORMS": 0, "queue_links-INITIAL_FORMS": 0}
    return {**data, **changes}


def test_an_agent_changes_only_their_own_presence(client):
    me = AgentFactory(presence=Presence.OFFLINE, capacity=3, display_name="Me")
    other = AgentFactory(presence=Presence.AVAILABLE, capacity=3, display_name="Other")
    client.force_login(me.user)

    page = client.get(f"/admin/assignment/agent/{me.pk}/change/").content.decode()
    assert 'name="presence"' in page and 'name="_save"' in page
    assert 'name="capacity"' not in page and 'name="display_name"' not in page  # shown, read-only

    response = client.post(f"/admin/assignment/agent/{me.pk}/change/",
                           agent_form(me, presence=Presence.AVAILABLE, capacity=99, display_name="Boss"))
    assert response.status_code == 302
    me.refresh_from_db()
    assert (me.presence, me.capacity, me.display_name) == (Presence.AVAILABLE, 3, "Me")
    assert me.presence_changed_at is not None

    # Another agent's row: readable, not writable, and no bulk action reaches it.
    page = client.get(f"/admin/assignment/agent/{other.pk}/change/").content.decode()
    assert 'name="_save"' not in page and 'name="presence"' not in page
    refused = client.post(f"/admin/assignment/agent/{other.pk}/change/",
                          agent_form(other, presence="offline"))
    assert refused.status_code == 403
    assert Agent.objects.get(pk=other.pk).presence == Presence.AVAILABLE
    changelist = client.get("/admin/assignment/agent/").content.decode()
    assert 'name="action"' not in changelist
    bulk = client.post("/admin/assignment/agent/",
                       {"action": "delete_selected", "_selected_action": [other.pk], "post": "yes"})
    assert bulk.status_code in (200, 302) and Agent.objects.filter(pk=other.pk).exists()


def test_ops_change_every_field_of_any_agent(client):
    agent = AgentFactory(capacity=3)
    client.force_login(UserFactory(roles=["ops"]))
    response = client.post(f"/admin/assignment/agent/{agent.pk}/change/", agent_form(agent, capacity=7))
    assert response.status_code == 302
    assert Agent.objects.get(pk=agent.pk).capacity == 7


def test_agents_hold_no_blanket_agent_change_permission():
    user = UserFactory(roles=["agent"])
    assert user.has_perm("assignment.change_own_presence")
    assert not user.has_perm("assignment.change_agent")


# Per object: merchant users never reach the admin -------------------------------------------

def test_a_merchant_user_made_staff_still_cannot_enter_the_admin(client):
    member = MerchantUserFactory(user__username="shop-owner")
    member.user.is_staff = True
    member.user.save()
    client.post("/admin/login/", {"username": "shop-owner", "password": "pass", "next": "/admin/"})
    assert client.get("/admin/").status_code == 302
    assert client.get("/admin/cases/case/").status_code == 302
    assert "but are not authorized to access this page" in client.get("/admin/login/").content.decode()


def test_a_staff_account_cannot_be_made_a_merchant_user(client):
    staff = UserFactory(username="staffer", roles=["agent"])
    merchant = MerchantUserFactory().merchant
    client.force_login(UserFactory(roles=["ops"]))
    response = client.post("/admin/merchants/merchantuser/add/", {"user": staff.pk, "merchant": merchant.pk})
    assert response.status_code == 200
    assert "uses the API only" in str(response.context["adminform"].form.errors["user"])
    assert not MerchantUser.objects.filter(user=staff).exists()
    plain = UserFactory(username="shop-clerk")
    response = client.post("/admin/merchants/merchantuser/add/", {"user": plain.pk, "merchant": merchant.pk})
    assert response.status_code == 302 and MerchantUser.objects.filter(user=plain).exists()

    # The same rule on the merchant's page, where members are added inline.
    inline = {"name": merchant.name, "external_id": merchant.external_id, "is_active": "on",
              "users-TOTAL_FORMS": 1, "users-INITIAL_FORMS": 0, "users-0-user": staff.pk}
    response = client.post(f"/admin/merchants/merchant/{merchant.pk}/change/", inline)
    assert response.status_code == 200 and "uses the API only" in response.content.decode()
    assert not MerchantUser.objects.filter(user=staff).exists()
