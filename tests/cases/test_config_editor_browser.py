"""The queue config editor in headless Chromium: an editor adds a required field with choices, runs
the dry run and the routing what-if and saves a draft; ops read the diff and publish; a new case
in admin then offers the field as a select with its choices."""

import pytest

from apps.cases import services
from apps.cases.models import QueueConfig
from tests.factories.accounts import UserFactory
from tests.factories.cases import REFUND_SCHEMA, QueueFactory, make_case


def sign_in(page, base: str, username: str, next_url: str) -> None:
    page.context.clear_cookies()
    page.goto(f"{base}/admin/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", "pass")
    page.click("input[type=submit]")


@pytest.mark.browser
def test_editor_drafts_a_required_field_and_ops_publish_it(page, live_server, transactional_db):
    from apps.core.roles import roles_sync_permissions

    roles_sync_permissions()  # transactional_db flushed the groups' permissions
    UserFactory(username="editor-b", roles=["queue-config-editor"])
    UserFactory(username="ops-b", roles=["ops"])
    queue = QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)
    case = make_case(queue=queue, fields={"order_id": "O-1"})
    editor_url = f"/admin/cases/queueconfig/queue/{queue.pk}/editor/"

    sign_in(page, live_server.url, "editor-b", editor_url)
    page.wait_for_selector("#section-fields")
    rows = page.locator("#section-fields tr.field-row")
    before = rows.count()
    page.click("button.add-row[data-prefix=fields]")  # the page's own script adds a row
    assert rows.count() == before + 1
    new = rows.last
    new.locator("input[name$=-name]").fill("contact_reason")
    new.locator("input[name$=-required]").check()
    new.locator("textarea[name$=-choices]").fill("refund\nreplacement")
    new.locator("textarea[name$=-description]").fill("Why the customer got in touch")

    page.click("button[value=dry_run]")
    dry_run = page.wait_for_selector("#dry-run")
    assert "1 of 1 open case(s) would fail" in dry_run.inner_text()
    assert "fields.contact_reason" in dry_run.inner_text()
    whatif = page.inner_text("#whatif")
    assert "cases that arrived\t1\t1" in whatif and "median wait" in whatif
    # Checked and dry-run input stays in the form: save it as a draft.
    page.fill("input[name=comment]", "ask why they called")
    page.click("button[value=save]")
    page.wait_for_selector(".messagelist")
    assert "Draft version 2 saved" in page.inner_text(".messagelist")
    assert page.locator("button[value=publish]").count() == 0  # editors do not publish

    # Publishing refuses a new required field open cases lack: the one open case is resolved first.
    services.case_transition(case=case, to_status="resolved")
    sign_in(page, live_server.url, "ops-b", f"/admin/cases/queueconfig/queue/{queue.pk}/diff/")
    changes = page.wait_for_selector("#changes")
    assert "fields_schema.properties.contact_reason" in changes.inner_text()
    assert "replacement" in changes.inner_text()
    page.click("#publish-form button[type=submit]")
    page.wait_for_selector(".messagelist")
    assert "Version 2 published and active" in page.inner_text(".messagelist")
    assert QueueConfig.objects.get(queue=queue, is_active=True).comment == "ask why they called"

    page.goto(f"{live_server.url}/admin/cases/case/add/?queue={queue.pk}")
    options = page.locator("select[name=df_contact_reason] option").all_inner_texts()
    assert options[1:] == ["refund", "replacement"]
    assert "Why the customer got in touch" in page.inner_text("body")
