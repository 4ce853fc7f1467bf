"""Stored XSS: markup written by editors, agents, merchants or remote checks into any text that the
admin shows comes out escaped on every page (forms, help text, lists, timeline, dashboards), and
never runs in a real browser."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.cases import services as case_services
from apps.cases.models import Case
from apps.core.errors import ApplicationError
from apps.health import services as health_services
from apps.health.models import CheckStatus
from apps.inventory import services as inventory_services
from tests.factories.accounts import AgentFactory, MerchantFactory, UserFactory
from tests.factories.cases import QueueFactory, make_case
from tests.factories.health import CheckResultFactory, HealthSpecFactory, check_doc
from tests.factories.inventory import CatalogItemFactory, StoreFactory, feed_body

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
ESCAPED = {
    SCRIPT: "&lt;script&gt;alert(1)&lt;/script&gt;",
    IMG: "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;",
}

XSS_SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "title": f"Order {SCRIPT}", "description": f"From the receipt {IMG}"},
        "reason": {"type": "string", "enum": ["late", SCRIPT], "description": SCRIPT},
        IMG: {"type": "integer"},  # a field name is editor-written too (it becomes the label)
    },
}


def assert_escaped(html: str, *payloads: str) -> None:
    assert "<script>alert(1)" not in html
    assert "<img src=x onerror=alert(1)>" not in html
    for payload in payloads:
        assert ESCAPED[payload] in html, f"{payload!r} is not shown (escaped) on the page"


@pytest.fixture
def ops_client(client):
    client.force_login(UserFactory(username="ops-xss", roles=["ops"]))
    return client


@pytest.fixture
def xss_case(db):
    queue = QueueFactory(slug="xss", name=f"Refunds {SCRIPT}", config__fields_schema=XSS_SCHEMA)
    agent = AgentFactory(display_name=f"Agent {SCRIPT}{IMG}")
    case = make_case(queue=queue, subject=f"Subject {SCRIPT}{IMG}",
                     fields={"order_id": IMG, "reason": SCRIPT, IMG: 2})
    case_services.case_assign(case=case, agent=agent)
    case_services.case_add_note(case=case, body=f"Note {SCRIPT}{IMG}")
    case_services.case_transition(case=case, to_status="in_progress", note=f"Moving {IMG}")
    return case


@pytest.mark.django_db
def test_queue_config_texts_are_escaped_in_the_case_form(ops_client, xss_case):
    page = ops_client.get(f"/admin/cases/case/{xss_case.pk}/change/").content.decode()
    # Help text (rendered by the admin as HTML), labels, choice labels, current values, timeline.
    assert_escaped(page, SCRIPT, IMG)
    assert f"<div>From the receipt {ESCAPED[IMG]}</div>" in page  # the help text
    assert f"Order {ESCAPED[SCRIPT]}" in page  # the label
    assert f'<option value="{ESCAPED[SCRIPT]}" selected>{ESCAPED[SCRIPT]}</option>' in page
    assert f"Note {ESCAPED[SCRIPT]}{ESCAPED[IMG]}" in page  # the timeline
    assert f"→ Agent {ESCAPED[SCRIPT]}" in page

    add = ops_client.get(f"/admin/cases/case/add/?queue={xss_case.queue_id}").content.decode()
    assert_escaped(add, SCRIPT, IMG)
    assert_escaped(ops_client.get("/admin/cases/case/add/").content.decode(), SCRIPT)  # the queue picker


@pytest.mark.django_db
def test_form_errors_quoting_a_value_are_escaped(ops_client, xss_case):
    response = ops_client.post(f"/admin/cases/case/{xss_case.pk}/change/", {
        "subject": "s", "priority": 2, "channel": "web", "df_order_id": "A-1", "df_reason": IMG,
        "events-TOTAL_FORMS": 0, "events-INITIAL_FORMS": 0})
    assert response.status_code == 200
    page = response.content.decode()
    assert "Select a valid choice" in page
    assert_escaped(page, IMG)


@pytest.mark.django_db
def test_case_lists_bulk_pages_and_queue_configs_escape_user_text(ops_client, xss_case):
    changelist = ops_client.get("/admin/cases/case/").content.decode()
    # Subject, queue and agent columns, and the filter sidebar (queues, agents, enum values).
    assert_escaped(changelist, SCRIPT, IMG)
    assert f"reason = {ESCAPED[SCRIPT]}" in changelist

    bulk = ops_client.post("/admin/cases/case/", {"action": "assign_to_agent", "index": 0,
                                                  "_selected_action": [str(xss_case.pk)]})
    assert bulk.status_code == 200
    assert_escaped(bulk.content.decode(), SCRIPT, IMG)  # the selected cases and the agent choices

    config = xss_case.queue.configs.get(is_active=True)
    for url in (f"/admin/cases/queueconfig/{config.pk}/change/", "/admin/cases/queueconfig/",
                f"/admin/cases/queueconfig/add/?queue={xss_case.queue_id}", "/admin/cases/queue/"):
        assert_escaped(ops_client.get(url).content.decode(), SCRIPT)


@pytest.mark.django_db
def test_agent_display_names_are_escaped(ops_client, xss_case):
    agent = Case.objects.select_related("assigned_agent").get(pk=xss_case.pk).assigned_agent
    for url in ("/admin/assignment/agent/", f"/admin/assignment/agent/{agent.pk}/change/"):
        assert_escaped(ops_client.get(url).content.decode(), SCRIPT, IMG)
    # The agent's own view of their row.
    own = Client()
    own.force_login(agent.user)
    assert_escaped(own.get(f"/admin/assignment/agent/{agent.pk}/change/").content.decode(), SCRIPT, IMG)


@pytest.mark.django_db
def test_health_texts_are_escaped_on_the_dashboard_and_the_spec_pages(ops_client):
    source = f"# owner: {SCRIPT}\nchecks:\n  - {{name: db, type: database}}\n"
    spec, _ = health_services.health_spec_apply(name="xss-spec", document=source)
    # A check's summary can quote what a remote system answered.
    CheckResultFactory(health_check=spec.checks.get(), status=CheckStatus.FAILURE,
                       message=f"got {SCRIPT}{IMG}")
    for url in ("/admin/health/healthspec/dashboard/", "/admin/health/healthspec/dashboard/?partial=1"):
        assert_escaped(ops_client.get(url).content.decode(), SCRIPT, IMG)
    result = spec.checks.get().results.get()
    result_page = ops_client.get(f"/admin/health/checkresult/{result.pk}/change/").content.decode()
    assert_escaped(result_page, SCRIPT, IMG)
    assert_escaped(ops_client.get(f"/admin/health/healthspec/{spec.pk}/change/").content.decode(), SCRIPT)

    # Names cannot carry markup at all: the admission refuses them, and the error is escaped.
    with pytest.raises(ApplicationError):
        HealthSpecFactory(name=f"x{SCRIPT}")
    with pytest.raises(ApplicationError):
        HealthSpecFactory(checks=[check_doc(f"c{IMG}")])
    response = ops_client.post("/admin/health/healthspec/add/", {
        "name": SCRIPT, "enabled": "on",
        "source": f"checks:\n  - {{name: 'web{IMG}', type: http, params: {{url: '{SCRIPT}'}}}}\n"})
    assert response.status_code == 200
    assert_escaped(response.content.decode())


@pytest.mark.django_db
def test_inventory_skus_names_and_reasons_are_escaped(ops_client):
    merchant = MerchantFactory(name=f"Shop {IMG}", external_id=f"m-{SCRIPT}")
    store = StoreFactory(merchant=merchant, name=f"Store {SCRIPT}")
    CatalogItemFactory(merchant=merchant, sku=SCRIPT, name=f"Jam {IMG}")
    for price in (1.0, 50.0):  # the second feed's 50x price is held for review
        run = inventory_services.feed_submit_json(
            store=store, enqueue=False,
            body=feed_body([{"sku": SCRIPT, "price": price, "available": True}, {"sku": IMG, "price": 1.0}]))
        inventory_services.ingestion_run_process(run_id=run.pk)

    review = ops_client.get("/admin/inventory/store/review-queue/").content.decode()
    assert "held by price guardrail" in review
    assert_escaped(review, SCRIPT)  # store, merchant id, SKU (the other SKU was rejected)
    lookup = f"/admin/inventory/store/{store.pk}/item-lookup/"
    assert_escaped(ops_client.get(lookup, {"sku": SCRIPT}).content.decode(), SCRIPT)
    rejected = ops_client.get(lookup, {"sku": IMG}).content.decode()
    assert "unknown sku" in rejected
    assert_escaped(rejected, IMG)
    pages = {"/admin/inventory/itemrejection/": [IMG], "/admin/inventory/catalogitem/": [SCRIPT, IMG],
             "/admin/inventory/store/": [SCRIPT], f"/admin/inventory/store/{store.pk}/csv-upload/": [SCRIPT],
             f"/admin/inventory/ingestionrun/{run.pk}/change/": [SCRIPT], "/admin/merchants/merchant/": [IMG]}
    for url, payloads in pages.items():
        assert_escaped(ops_client.get(url).content.decode(), *payloads)


@pytest.mark.browser
def test_help_text_with_markup_shows_literally_and_runs_nothing_in_a_browser(page, live_server,
                                                                             transactional_db):
    from apps.core.roles import roles_sync_permissions

    roles_sync_permissions()  # transactional_db flushed the groups' permissions
    UserFactory(username="ops-browser", roles=["ops"])  # password "pass"
    queue = QueueFactory(slug="xss-browser", config__fields_schema=XSS_SCHEMA)
    case = make_case(queue=queue, subject=f"Subject {IMG}", fields={"order_id": "A-1"})
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    page.goto(f"{live_server.url}/admin/login/?next=/admin/cases/case/{case.pk}/change/")
    page.fill("#id_username", "ops-browser")
    page.fill("#id_password", "pass")
    page.click("input[type=submit]")
    help_text = page.locator("#id_df_order_id_helptext")
    help_text.wait_for()
    assert help_text.inner_text().strip() == f"From the receipt {IMG}"
    assert page.locator("#id_df_reason_helptext").inner_text().strip() == SCRIPT
    assert page.locator("label[for=id_df_order_id]").inner_text().startswith(f"Order {SCRIPT}")
    assert page.locator("#id_df_reason option", has_text=SCRIPT).count() == 1
    assert page.locator("img[src=x]").count() == 0
    # A script that did run would have raised its alert by now: the page has finished loading.
    page.wait_for_load_state("load")
    assert dialogs == []
