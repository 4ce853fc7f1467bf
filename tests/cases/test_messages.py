"""The message store: every hub post, agent reply or recorded message is one Message with its
timeline event; validation refuses with field errors and writes nothing; the thread is read in a
fixed number of queries; the admin shows it (escaped) and takes an agent's reply with files."""

from __future__ import annotations

from email.utils import formataddr

import pytest
from django.core import mail
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from apps.cases import selectors, services, tasks
from apps.cases.models import Attachment, Case, CaseEvent, DeliveryStatus, Message, Status
from apps.core.errors import ApplicationError, Conflict, NotFound
from tests.factories.accounts import AgentFactory, MerchantUserFactory, UserFactory
from tests.factories.cases import AttachmentFactory, MessageFactory, QueueFactory, mail_bytes, make_case

pytestmark = pytest.mark.django_db

PDF = b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


def pdf(name: str = "receipt.pdf", content: bytes = PDF) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/pdf")


@pytest.fixture
def member():
    return MerchantUserFactory(user__email="owner@shop.example", user__first_name="Olga",
                               user__last_name="Owner")


@pytest.fixture
def case(member):
    return make_case(queue=QueueFactory(slug="general"), subject="Late delivery",
                     merchant_ref=member.merchant.external_id)


def message_events(case) -> list[dict]:
    return [e.data for e in CaseEvent.objects.filter(case=case, kind="message").order_by("id")]


def emailed_case(settings) -> Case:
    """A case opened by a customer's mail, so agents' replies have someone to go to."""
    settings.CASEHUB_INBOUND_QUEUE = "email"
    QueueFactory(slug="email")
    raw = mail_bytes(sender="Ann <ann@example.org>", subject="Broken lamp", message_id="ann-1@example.org",
                     references=["older@example.org"])
    result = services.message_receive_email(raw=raw)
    return result.case


# Recording (agents, the API and imports) -----------------------------------------------------------


def test_a_recorded_message_is_one_row_and_one_event(case):
    agent = AgentFactory()
    message = services.case_add_message(case=case, body="We called the courier.", actor=agent.user)
    assert (message.direction, message.source, message.sender_user, message.latest_reply_text) == (
        "outbound", "agent", agent.user, "We called the courier.")
    assert message_events(case) == [{"message": message.pk, "direction": "outbound", "source": "agent",
                                     "preview": "We called the courier.", "attachments": 0}]
    case.refresh_from_db()
    assert case.first_response_at is not None
    inbound = services.case_add_message(case=case, body="Customer says thanks", direction="inbound")
    assert inbound.direction == "inbound" and Message.objects.filter(case=case).count() == 2


def test_recording_refuses_bad_input_and_legacy_cases(case):
    with pytest.raises(ApplicationError) as refused:
        services.case_add_message(case=case, body="   ")
    assert refused.value.errors == {"body": ["This field is required."]}
    with pytest.raises(ApplicationError) as refused:
        services.case_add_message(case=case, body="hi", direction="sideways")
    assert "direction" in refused.value.errors
    services.case_legacy_transfer_out(case=case, legacy_ref="CRM-1")
    with pytest.raises(Conflict):
        services.case_add_message(case=case, body="hi")
    assert Message.objects.count() == 0 and not message_events(case)


def test_the_preview_is_short_and_flat(case):
    services.case_add_message(case=case, body="word\n\n" * 200)
    preview = message_events(case)[0]["preview"]
    assert len(preview) <= 140 and "\n" not in preview and preview.endswith("…")


# Support Hub posts ------------------------------------------------------------------------------------


def test_a_hub_post_is_stored_with_its_files_and_event(case, member):
    message = services.message_post_from_hub(case=case, user=member.user, text="Any news?\n\n> old quote",
                                             files=[pdf()])
    assert (message.direction, message.source, message.sender_user) == ("inbound", "hub", member.user)
    assert (message.sender_address, message.sender_name) == ("owner@shop.example", "Olga Owner")
    assert message.latest_reply_text == "Any news?" and message.has_quoted_history
    [attachment] = message.attachments.all()
    assert (attachment.filename, attachment.content_type, attachment.case_id) == (
        "receipt.pdf", "application/pdf", case.pk)
    assert default_storage.open(attachment.file.name).read() == PDF
    event = CaseEvent.objects.get(case=case, kind="message")
    assert event.actor == member.user and event.data["attachments"] == 1 and event.data["source"] == "hub"


@pytest.mark.parametrize(("text", "files", "field", "words"), [
    ("", [], "text", "Write a message or attach a file."),
    ("bad \x00 byte", [], "text", "NUL"),
    ("x" * 100_001, [], "text", "At most 100000 characters."),
    ("see file", [SimpleUploadedFile("x.pdf", b"<html><script>alert(1)</script>")], "files",
     "x.pdf is not a file type we accept"),
    ("see file", [SimpleUploadedFile("empty.pdf", b"")], "files", "empty.pdf is empty."),
    ("see files", [pdf(f"{n}.pdf") for n in range(6)], "files", "At most 5 files per message."),
])
def test_a_bad_hub_post_gets_field_errors_and_writes_nothing(case, member, text, files, field, words):
    with pytest.raises(ApplicationError) as refused:
        services.message_post_from_hub(case=case, user=member.user, text=text, files=files)
    assert refused.value.status_code == 400
    assert any(words in message for message in refused.value.errors[field]), refused.value.errors
    assert not Message.objects.exists() and not Attachment.objects.exists() and not message_events(case)


def test_an_oversized_file_is_refused(case, member, settings):
    settings.CASEHUB_ATTACHMENT_MAX_BYTES = 1000
    with pytest.raises(ApplicationError) as refused:
        services.message_post_from_hub(case=case, user=member.user, text="big",
                                       files=[pdf("big.pdf", PDF + b"0" * 1000)])
    assert refused.value.errors == {"files": ["big.pdf is larger than the limit of 1000 bytes."]}


def test_a_file_alone_is_a_message(case, member):
    message = services.message_post_from_hub(case=case, user=member.user, text="", files=[pdf()])
    assert message.attachments.count() == 1 and message.text_body == ""


def test_merchants_post_only_on_their_own_cases(case):
    stranger = MerchantUserFactory()
    with pytest.raises(NotFound):
        services.message_post_from_hub(case=case, user=stranger.user, text="hello", files=[])
    with pytest.raises(NotFound):
        services.message_post_from_hub(case=case, user=UserFactory(roles=["agent"]), text="hello", files=[])


def test_a_hub_post_reopens_a_resolved_case(case, member):
    services.case_transition(case=case, to_status=Status.RESOLVED)
    services.message_post_from_hub(case=case, user=member.user, text="It broke again", files=[])
    case.refresh_from_db()
    assert case.status == Status.REOPENED


def test_a_hub_post_tells_the_assigned_agent_after_commit(case, member, django_capture_on_commit_callbacks):
    agent = AgentFactory(user=UserFactory(email="agent@casehub.example", roles=["agent"]))
    services.case_assign(case=case, agent=agent)
    with django_capture_on_commit_callbacks() as callbacks:
        message = services.message_post_from_hub(case=case, user=member.user, text="Where is it?", files=[])
    assert len(callbacks) == 1  # the notification task, sent once the post is committed
    assert tasks.message_notify_agent(message.pk) is True
    [sent] = mail.outbox
    assert sent.to == ["agent@casehub.example"] and sent.extra_headers["Auto-Submitted"] == "auto-generated"
    assert "Where is it?" in sent.body and f"/admin/cases/case/{case.pk}/change/" in sent.body


def test_no_agent_no_notification(case, member, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks() as callbacks:
        message = services.message_post_from_hub(case=case, user=member.user, text="Hello?", files=[])
    assert callbacks == []
    assert tasks.message_notify_agent(message.pk) is False and mail.outbox == []


# Agents' replies ------------------------------------------------------------------------------------


def test_an_internal_note_is_never_sent_nor_shown_to_merchants(settings, django_capture_on_commit_callbacks):
    case = emailed_case(settings)
    agent = AgentFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        note = services.message_send_from_agent(case=case, user=agent.user, text="Customer is VIP",
                                                internal=True)
    assert callbacks == []
    assert (note.merchant_visible, note.delivery_status, note.message_id) == (False, "", "")
    assert note.to_addresses == []
    assert message_events(case)[-1]["internal"] is True
    assert Case.objects.get(pk=case.pk).first_response_at is None
    assert note not in selectors.message_thread(case, merchant_view=True)


def test_a_reply_on_an_emailed_case_is_queued_with_threading_headers(
        settings, django_capture_on_commit_callbacks):
    case = emailed_case(settings)
    agent = AgentFactory(display_name="Sam Support")
    with django_capture_on_commit_callbacks() as callbacks:
        reply = services.message_send_from_agent(case=case, user=agent.user, text="A new lamp is on its way.",
                                                 html="<p>A new lamp <script>x()</script>is on its way.</p>",
                                                 files=[pdf()])
    assert len(callbacks) == 1
    assert reply.delivery_status == DeliveryStatus.PENDING and reply.to_addresses == ["ann@example.org"]
    assert reply.message_id.endswith(f"@{settings.CASEHUB_EMAIL_DOMAIN}")
    assert reply.in_reply_to == "ann-1@example.org"
    assert reply.references == ["older@example.org", "ann-1@example.org"]
    assert reply.subject == f"Re: Broken lamp [case:{case.pk}]" and reply.sender_name == "Sam Support"
    assert "script" not in reply.html_body and "A new lamp" in reply.html_body
    assert Case.objects.get(pk=case.pk).first_response_at is not None
    assert message_events(case)[-1]["attachments"] == 1


def test_a_reply_on_a_case_without_address_stays_in_the_hub(case, django_capture_on_commit_callbacks):
    agent = AgentFactory()
    with django_capture_on_commit_callbacks() as callbacks:
        reply = services.message_send_from_agent(case=case, user=agent.user, text="Refund issued.")
    assert callbacks == [] and reply.delivery_status == "" and reply.merchant_visible
    assert list(selectors.message_thread(case, merchant_view=True)) == [reply]


def test_a_reply_needs_content_and_a_case_worked_here(case):
    agent = AgentFactory()
    with pytest.raises(ApplicationError) as refused:
        services.message_send_from_agent(case=case, user=agent.user, text=" ")
    assert refused.value.errors == {"text": ["Write a message or attach a file."]}
    services.case_legacy_transfer_out(case=case)
    with pytest.raises(Conflict):
        services.message_send_from_agent(case=case, user=agent.user, text="hello")
    assert not Message.objects.exists()


# Reading the thread ------------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 12])
def test_the_thread_takes_two_queries_however_long(case, count, django_assert_num_queries):
    users = [UserFactory() for _ in range(3)]
    for n in range(count):
        message = MessageFactory(case=case, sender_user=users[n % 3])
        for _ in range(n % 4):
            AttachmentFactory(message=message)
    with django_assert_num_queries(2):
        thread = list(selectors.message_thread(case))
        shown = [(m.sender_user.username, [a.filename for a in m.attachments.all()]) for m in thread]
    assert len(shown) == count and sum(len(files) for _, files in shown) == sum(n % 4 for n in range(count))


def test_the_merchant_view_leaves_out_internal_and_automatic_mail(settings):
    case = emailed_case(settings)
    services.message_send_from_agent(case=case, user=AgentFactory().user, text="note", internal=True)
    services.message_receive_email(raw=mail_bytes(in_reply_to="ann-1@example.org", subject="Out of office",
                                                  headers={"Auto-Submitted": "auto-replied"}))
    everything = list(selectors.message_thread(case))
    assert len(everything) == 3
    assert list(selectors.message_thread(case, merchant_view=True)) == everything[:1]


# The thread in the admin ----------------------------------------------------------------------------


@pytest.fixture
def agent_client():
    client = Client()
    client.force_login(AgentFactory().user)
    return client


def test_the_case_page_shows_the_thread_with_quotes_folded(settings, agent_client):
    case = emailed_case(settings)
    services.message_receive_email(raw=mail_bytes(
        in_reply_to="ann-1@example.org",
        text="Still broken.\n\nOn Monday, Support wrote:\n> A new lamp is coming.",
        attachments=[("photo.pdf", "application/pdf", PDF)]))
    page = agent_client.get(f"/admin/cases/case/{case.pk}/change/").content.decode()
    assert 'id="thread"' in page and "Conversation (2)" in page
    reply = page.index('<div class="casehub-reply">Still broken.</div>')
    folded = page.index("<details class=\"casehub-quoted\"><summary>Show quoted history</summary>", reply)
    assert "&gt; A new lamp is coming." in page[folded:]
    attachment = Attachment.objects.get()
    assert f'href="/admin/cases/case/{case.pk}/attachments/{attachment.pk}/" download>photo.pdf</a>' in page
    assert "Emailed to ann@example.org" in page and 'form="casehub-reply"' in page


def test_an_agent_replies_from_the_case_page(settings, agent_client, django_capture_on_commit_callbacks):
    case = emailed_case(settings)
    with django_capture_on_commit_callbacks(execute=False):
        response = agent_client.post(f"/admin/cases/case/{case.pk}/reply/",
                                     {"text": "Replacement shipped.", "files": [pdf("label.pdf")]})
    assert response.status_code == 302 and response["Location"].endswith(f"/{case.pk}/change/#thread")
    reply = Message.objects.get(case=case, direction="outbound")
    assert reply.text_body == "Replacement shipped." and reply.attachments.get().filename == "label.pdf"
    page = agent_client.get(response["Location"]).content.decode()
    assert "being emailed to ann@example.org" in page and "email pending to ann@example.org" in page

    agent_client.post(f"/admin/cases/case/{case.pk}/reply/", {"text": "VIP customer", "internal": "1"})
    assert Message.objects.get(case=case, merchant_visible=False, source="agent").text_body == "VIP customer"

    refused = agent_client.post(f"/admin/cases/case/{case.pk}/reply/", {"text": ""}, follow=True)
    assert "Nothing was sent." in refused.content.decode()
    assert Message.objects.filter(case=case, direction="outbound").count() == 2


def test_replying_and_downloading_need_the_case_permissions(settings):
    case = emailed_case(settings)
    message = services.message_receive_email(raw=mail_bytes(
        in_reply_to="ann-1@example.org", attachments=[("a.pdf", "application/pdf", PDF)])).message
    attachment = message.attachments.get()
    editor = Client()
    editor.force_login(UserFactory(roles=["queue-config-editor"]))
    assert editor.post(f"/admin/cases/case/{case.pk}/reply/", {"text": "hi"}).status_code == 403
    assert editor.get(f"/admin/cases/case/{case.pk}/attachments/{attachment.pk}/").status_code == 403
    merchant = Client()
    merchant.force_login(MerchantUserFactory().user)
    assert merchant.get(f"/admin/cases/case/{case.pk}/attachments/{attachment.pk}/").status_code == 302
    assert not Message.objects.filter(direction="outbound").exists()

    agent = Client()
    agent.force_login(AgentFactory().user)
    assert agent.get(f"/admin/cases/case/{case.pk}/reply/").status_code == 405
    download = agent.get(f"/admin/cases/case/{case.pk}/attachments/{attachment.pk}/")
    assert download.status_code == 200 and b"".join(download.streaming_content) == PDF
    assert download["Content-Type"] == "application/pdf"
    assert download["Content-Disposition"] == 'attachment; filename="a.pdf"'
    assert download["X-Content-Type-Options"] == "nosniff"
    assert download["Content-Security-Policy"] == "sandbox"
    other = make_case(queue=QueueFactory(slug="other"))
    assert agent.get(f"/admin/cases/case/{other.pk}/attachments/{attachment.pk}/").status_code == 404


def test_what_mail_senders_wrote_is_inert_in_the_admin(settings, agent_client):
    case = emailed_case(settings)
    services.message_receive_email(raw=mail_bytes(
        in_reply_to="ann-1@example.org", sender=formataddr((f"Eve {IMG}", "eve@example.org")),
        subject=f"Hi {SCRIPT}",
        text=f"Text {SCRIPT}{IMG}\n\nOn Monday, x wrote:\n> quoted {SCRIPT}",
        html=f"<p>Html {SCRIPT}<img src=x onerror=alert(1)></p>",
        attachments=[(f"{IMG}.pdf", "application/pdf", PDF)]))
    page = agent_client.get(f"/admin/cases/case/{case.pk}/change/").content.decode()
    assert "<script>alert(1)" not in page and "<img src=x onerror=alert(1)>" not in page
    assert "Text &lt;script&gt;alert(1)&lt;/script&gt;&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;" in page  # the subject
    assert "Eve &quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page  # the sender's name
    assert "quoted &lt;script&gt;" in page  # the folded history
    message = Message.objects.filter(case=case).order_by("id").last()
    assert "<script" not in message.html_body and "onerror" not in message.latest_reply_html
