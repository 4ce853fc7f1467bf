"""A real headless Chromium logs into the admin as the demo ops user."""

import pytest
from django.core.management import call_command


@pytest.mark.browser
def test_ops_user_logs_into_admin(page, live_server, transactional_db):
    call_command("seed_demo", no_progress=True)
    page.goto(f"{live_server.url}/")  # the bare address leads to the admin's login
    assert "/admin/login/" in page.url
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops")
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")
    assert "ops" in page.inner_text("#user-tools").lower()
    # The ops role sees the product apps it manages.
    assert page.locator("#content-main").get_by_text("Merchants").count() >= 1
    # Every admin page links to the health dashboard for roles that may see it.
    page.locator("#user-tools").get_by_role("link", name="Health").click()
    page.wait_for_selector("h1")
    assert page.inner_text("h1") == "Health dashboard"


@pytest.mark.browser
def test_wrong_password_is_refused(page, live_server, transactional_db):
    call_command("seed_demo", no_progress=True)
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "not-the-password")
    page.click("input[type=submit]")
    assert page.locator(".errornote").is_visible()
