"""Agent import in a real headless browser: ops upload a CSV with a bad row and see the row's
errors, with nothing written until the file is valid."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission

from apps.assignment.models import Agent
from tests.factories.accounts import UserFactory
from tests.factories.cases import QueueFactory

IMPORT = "/admin/assignment/agent/import/"
CSV = (b"name,email,queues,skills,capacity,channel_weights\n"
       b"Ada Lovelace,ada@example.com,refunds:1,english,3,\n"
       b"Bad Row,not-an-address,nowhere:1,,900,\n")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_ops_upload_a_csv_with_a_bad_row_and_see_its_errors(page, live_server):
    # Granted directly: a transactional test flushes the role groups' permissions.
    user = UserFactory(username="ops-import", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="ops")[0])
    user.user_permissions.add(*Permission.objects.filter(codename__in=["add_agent", "view_agent"]))
    QueueFactory(slug="refunds")

    page.goto(f"{live_server.url}/admin/login/?next={IMPORT}")
    page.fill("#id_username", "ops-import")
    page.fill("#id_password", "pass")
    page.click("input[type=submit]")
    page.set_input_files("#id_file", files=[{"name": "team.csv", "mimeType": "text/csv", "buffer": CSV}])
    page.check("input[name=mode][value=all_or_nothing]")
    page.click("#agent-import-form input[type=submit]")

    bad = page.wait_for_selector('#import-rows tr[data-line="3"]')
    text = bad.inner_text()
    assert "invalid" in text and "Not a valid email address." in text
    assert "Unknown or inactive queue 'nowhere'" in text and "Between 1 and 100." in text
    assert "not written" in page.inner_text('#import-rows tr[data-line="2"]')
    assert "Nothing was written" in page.inner_text("#import-report")
    assert not Agent.objects.exists()
