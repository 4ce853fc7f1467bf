"""A real headless Chromium uses /hub/ as a merchant user: signs in, sees the unread badge, opens the
thread (each message in a sandboxed iframe), replies with a file, and the badge clears. Markup that
merchants or mail put in subjects, bodies and file names shows as text and never runs."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from apps.cases.models import Message, MessageSource
from tests.factories.accounts import AgentFactory
from tests.factories.merchants import PNG, agent_reply, hub_case, hub_member, inbound_email

XSS = '<img src=x onerror="window.__pwned=1">'


@pytest.mark.browser
def test_a_merchant_reads_and_answers_a_thread(page, live_server, transactional_db):
    member = hub_member(user__username="corner-mart")  # password "pass"
    case = hub_case(member, subject=f"Fridge {XSS}")
    inbound_email(case, text="The fridge is warm.\n\nOn Mon, Bob wrote:\n> old text",
                  html=f"<p>The fridge is warm. {XSS}</p><blockquote>old text</blockquote>")
    agent_reply(case, AgentFactory(display_name="Dana"), f"A technician comes today {XSS}")
    hub_case(hub_member(), subject="Another merchant's case")
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))

    page.goto(f"{live_server.url}/hub/")
    assert "/hub/login/" in page.url
    page.fill("#id_username", "corner-mart")
    page.fill("#id_password", "pass")
    page.click("button[type=submit]")

    entry = page.locator("li.case").filter(has_text="Fridge")
    badge = entry.locator(".badge")
    badge.wait_for()
    assert badge.inner_text() == "2" and badge.is_visible()
    assert page.locator("li.case").count() == 1  # only this merchant's cases
    assert entry.locator(".subject").inner_text() == f"Fridge {XSS}"  # shown as text

    entry.locator("button").click()
    page.locator("#messages li.message").nth(1).wait_for()
    frames = page.locator("#messages iframe")
    assert frames.count() == 2
    assert all(frames.nth(n).get_attribute("sandbox") == "" for n in range(2))
    assert "technician" in frames.nth(1).get_attribute("srcdoc")
    assert "Dana" in page.locator("#messages li.message").nth(1).inner_text()
    expect(badge).to_be_hidden()
    expect(badge).to_have_attribute("data-unread", "0")

    # Quoted history is folded until asked for.
    assert "old text" not in frames.nth(0).get_attribute("srcdoc")
    page.click("#toggle-history")
    expect(frames.nth(0)).to_have_attribute("srcdoc", re.compile("old text"))

    page.fill("#reply-text", "Thanks, see the photo")
    page.set_input_files("#reply-files", files=[{"name": "warm.png", "mimeType": "image/png", "buffer": PNG}])
    page.click("#reply button[type=submit]")
    page.locator("#messages li.message").nth(2).wait_for()
    assert page.locator("#messages li.message").nth(2).get_by_text("warm.png").count() == 1
    sent = Message.objects.filter(case=case, source=MessageSource.HUB).get()
    assert sent.text_body == "Thanks, see the photo" and sent.attachments.get().filename == "warm.png"

    # After a reload the badge stays cleared: the read marker is stored.
    page.reload()
    page.locator("li.case").first.wait_for()
    assert page.locator("li.case .badge").get_attribute("data-unread") == "0"
    assert page.evaluate("window.__pwned") is None and dialogs == []
