"""An agent in headless Chromium works a case's email thread in the admin: sees the newest reply,
unfolds the quoted history, replies with a file, and finds the reply in the thread."""

import pytest

from apps.cases import services
from apps.cases.models import Message
from apps.core.roles import roles_sync_permissions
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import QueueFactory, mail_bytes

PDF = b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n"


@pytest.mark.browser
def test_an_agent_reads_the_thread_and_replies_with_a_file(page, live_server, transactional_db, settings):
    roles_sync_permissions()  # transactional_db flushed the groups' permissions
    settings.CASEHUB_INBOUND_QUEUE = "email"
    QueueFactory(slug="email")
    first = services.message_receive_email(raw=mail_bytes(
        sender="Ann Customer <ann@example.org>", subject="Broken lamp", message_id="ann-1@example.org",
        text="My lamp arrived broken.")).message
    services.message_receive_email(raw=mail_bytes(
        sender="Ann Customer <ann@example.org>", subject="Re: Broken lamp", in_reply_to="ann-1@example.org",
        text="Any news on the lamp?\n\nOn Monday, Casehub Support wrote:\n> We are looking into it.\n> Sam"))
    AgentFactory(user=UserFactory(username="sam", roles=["agent"]))

    page.goto(f"{live_server.url}/admin/login/?next=/admin/cases/case/{first.case_id}/change/")
    page.fill("#id_username", "sam")
    page.fill("#id_password", "pass")
    page.click("input[type=submit]")
    page.wait_for_selector("#thread")

    thread = page.locator("#thread")
    assert "Conversation (2)" in thread.inner_text()
    newest = thread.locator("article").last
    assert newest.locator(".casehub-reply").inner_text() == "Any news on the lamp?"
    history = newest.locator(".casehub-quoted pre")
    assert not history.is_visible()
    newest.get_by_text("Show quoted history").click()
    assert history.is_visible() and "> We are looking into it." in history.inner_text()

    page.fill("textarea[name=text]", "A new lamp is on its way.")
    page.set_input_files("input[name=files]", files=[
        {"name": "label.pdf", "mimeType": "application/pdf", "buffer": PDF}])
    page.get_by_role("button", name="Send reply").click()
    page.wait_for_selector(".messagelist")
    assert "being emailed to ann@example.org" in page.inner_text(".messagelist")

    reply = page.locator("#thread article").last
    assert reply.locator(".casehub-reply").inner_text() == "A new lamp is on its way."
    assert "email pending to ann@example.org" in reply.inner_text()
    link = reply.get_by_role("link", name="label.pdf")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "label.pdf"
    assert Message.objects.get(direction="outbound").attachments.get().size == len(PDF)
