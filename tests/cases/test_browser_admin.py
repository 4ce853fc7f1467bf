"""An agent/ops session in headless Chromium: filter cases by a dynamic field, edit a case through
its schema-generated form, and run a bulk action through its intermediate page."""

import pytest

from apps.cases.models import Case, CaseEvent, Status
from apps.core import demo as core_demo
from apps.core.progress import SILENT
from tests.factories.cases import REFUND_SCHEMA, QueueFactory, make_case


@pytest.mark.browser
def test_ops_works_cases_in_the_admin(page, live_server, transactional_db):
    core_demo.seed(progress=SILENT)  # the ops / ops login
    from apps.core.roles import roles_sync_permissions

    roles_sync_permissions()  # transactional_db flushed the groups' permissions
    refunds = QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)
    late = [make_case(queue=refunds, fields={"order_id": f"L-{n}", "reason": "late"},
                      subject=f"late {n}") for n in range(3)]
    make_case(queue=refunds, fields={"order_id": "D-1", "reason": "damaged"}, subject="damaged one")

    page.goto(f"{live_server.url}/admin/login/?next=/admin/cases/case/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")
    assert page.locator("#result_list tbody tr").count() == 4

    page.get_by_role("link", name="reason = late").click()
    page.wait_for_url("**df=reason*")
    assert page.locator("#result_list tbody tr").count() == 3

    # Bulk: select all filtered rows, "Change status…", fill the intermediate form, apply.
    page.check("#action-toggle")
    page.select_option("select[name=action]", "change_status")
    page.click("button[name=index]")
    page.wait_for_selector("input[name=apply]")
    page.select_option("select[name=status]", "resolved")
    page.fill("textarea[name=note]", "refunded in bulk")
    page.click("input[name=apply]")
    page.wait_for_selector(".messagelist")
    assert "3 case(s) done" in page.inner_text(".messagelist")
    assert set(Case.objects.filter(status=Status.RESOLVED)) == set(late)

    # Edit one case: its schema fields are real form fields; the timeline shows the history.
    page.goto(f"{live_server.url}/admin/cases/case/{late[0].pk}/change/")
    assert page.input_value("input[name=df_order_id]") == "L-0"
    page.select_option("select[name=df_reason]", "damaged")
    page.fill("input[name=df_items_missing]", "2")
    page.click("input[name=_continue]")
    page.wait_for_selector(".messagelist")
    timeline = page.inner_text("#events-group")
    assert "fields.reason: 'late' → 'damaged'" in timeline and "refunded in bulk" in timeline
    assert Case.objects.get(pk=late[0].pk).fields == {"order_id": "L-0", "reason": "damaged",
                                                      "items_missing": 2}
    assert CaseEvent.objects.filter(case=late[0], kind="field_changed").count() == 2
