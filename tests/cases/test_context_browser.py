"""An agent in headless Chromium opens a case while the outside delivery system is down: the
case page renders, and its context panel shows the stale cached copy with its age."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.roles import roles_sync_permissions
from tests.cases.context_fixtures import outside_service  # noqa: F401  (the `outside` fixture)
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import QueueFactory, make_case
from tests.factories.context import ContextRecordFactory


@pytest.mark.browser
def test_the_case_page_shows_the_stale_copy_and_its_age_when_outside_is_down(
        page, live_server, transactional_db, outside):
    roles_sync_permissions()  # transactional_db flushed the groups' permissions
    AgentFactory(user=UserFactory(username="sam", roles=["agent"]))
    case = make_case(queue=QueueFactory(), subject="Parcel late", delivery_ref="D-42")
    ContextRecordFactory(key="D-42", data={"status": "in transit", "courier": "<b>Courier 7</b>"},
                         fetched_at=timezone.now() - timedelta(hours=3), stale=True)
    outside.stop()

    page.goto(f"{live_server.url}/admin/login/?next=/admin/cases/case/{case.pk}/change/")
    page.fill("#id_username", "sam")
    page.fill("#id_password", "pass")
    page.click("input[type=submit]")
    panel = page.locator("#casehub-context [data-type=delivery]")
    panel.wait_for()

    text = panel.inner_text()
    assert "D-42" in text and "in transit" in text
    assert "<b>Courier 7</b>" in text  # shown as text, never as markup
    assert panel.locator("b").count() == 0
    assert "Fetched 3\xa0hours ago" in text or "Fetched 3 hours ago" in text
    assert "stale copy: could not refresh" in text
    assert page.locator("#id_subject").input_value() == "Parcel late"  # the rest of the page is there
