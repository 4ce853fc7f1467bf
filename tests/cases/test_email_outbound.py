"""Agents' replies by email, against a real SMTP server on loopback (aiosmtpd): the mail carries
its Message-ID, In-Reply-To, References and the case token, and the customer's answer threads
back; a failed send retries with backoff and shows on the message; a worker killed mid-send
loses nothing and half-writes nothing."""

from __future__ import annotations

import contextlib
import email
import email.policy
import signal
import socket
import threading
from datetime import timedelta

import psutil
import pytest
from aiosmtpd.controller import Controller
from celery import current_app
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from apps.cases import services
from apps.cases.models import DeliveryStatus, Message
from apps.cases.services.email_out import delivery_backoff_s
from tests.factories.accounts import AgentFactory
from tests.factories.cases import QueueFactory, mail_bytes
from tests.utils.processes import celery_worker
from tests.utils.waiting import wait_for

PDF = b"%PDF-1.4\n1 0 obj << >> endobj\n%%EOF\n"
SECRET = "outbound-test-secret"


class Mailbox:
    """aiosmtpd handler keeping every accepted mail; optionally holds the first one until told."""

    def __init__(self, *, hold_first: bool = False) -> None:
        self.received: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []
        self.hold_first = hold_first
        self.first_arrived = threading.Event()
        self.release = threading.Event()
        self.attempts = 0

    async def handle_DATA(self, server, session, envelope):
        self.attempts += 1
        if self.hold_first and self.attempts == 1:
            self.first_arrived.set()
            # The sender is killed meanwhile; this mail is never accepted.
            await server.loop.run_in_executor(None, self.release.wait)
            return "451 4.3.0 Try again later"
        self.received.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 2.0.0 OK"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def smtp_server(mailbox: Mailbox):
    controller = Controller(mailbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller.port
    finally:
        mailbox.release.set()
        controller.stop()


@pytest.fixture
def mailbox(settings):
    box = Mailbox()
    with smtp_server(box) as port:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", port, 20
        yield box


@pytest.fixture
def inbound(settings):
    settings.CASEHUB_INBOUND_EMAIL_SECRET = SECRET
    settings.CASEHUB_INBOUND_QUEUE = "email"
    QueueFactory(slug="email")


def receive(raw: bytes) -> Message:
    response = Client().generic("POST", "/api/v1/email/inbound/", raw, content_type="message/rfc822",
                                HTTP_AUTHORIZATION=f"Bearer {SECRET}")
    assert response.status_code == 201, response.content
    return Message.objects.get(pk=response.json()["message"])


def customer_mail() -> Message:
    return receive(mail_bytes(sender="Ann Customer <ann@example.org>", subject="Broken lamp",
                              message_id="ann-1@example.org", references=["shop-0@example.org"]))


@pytest.mark.django_db
def test_an_agent_reply_arrives_with_its_threading_headers_and_the_answer_threads_back(
        mailbox, inbound, settings):
    first = customer_mail()
    case = first.case
    agent = AgentFactory(display_name="Sam")
    reply = services.message_send_from_agent(
        case=case, user=agent.user, text="A new lamp is on its way.", html="<p>A new lamp is on its way.</p>",
        files=[SimpleUploadedFile("label.pdf", PDF)])
    assert services.message_deliver(message_id=reply.pk) == "sent"

    [sent] = mailbox.received
    assert mailbox.recipients == [["ann@example.org"]]
    assert sent["Message-ID"] == f"<{reply.message_id}>"
    assert reply.message_id.endswith(f"@{settings.CASEHUB_EMAIL_DOMAIN}")
    assert sent["In-Reply-To"] == "<ann-1@example.org>"
    assert sent["References"].split() == ["<shop-0@example.org>", "<ann-1@example.org>"]
    assert sent["Subject"] == f"Re: Broken lamp [case:{case.pk}]"
    assert sent["From"] == settings.DEFAULT_FROM_EMAIL and sent["To"] == "ann@example.org"
    assert sent.get_body(("plain",)).get_content().strip() == "A new lamp is on its way."
    assert "A new lamp" in sent.get_body(("html",)).get_content()
    [attachment] = list(sent.iter_attachments())
    assert (attachment.get_filename(), attachment.get_content()) == ("label.pdf", PDF)
    reply.refresh_from_db()
    assert (reply.delivery_status, reply.delivery_attempts) == (DeliveryStatus.SENT, 1)
    assert reply.delivery_error == ""
    assert reply.delivered_at is not None and reply.delivery_due_at is None
    assert services.message_deliver(message_id=reply.pk) == "skipped"  # a duplicate task sends nothing
    assert len(mailbox.received) == 1

    # The customer answers: by the headers their client keeps, or by the subject token alone.
    by_headers = receive(mail_bytes(sender="ann@example.org", subject=f"Re: {sent['Subject']}",
                                    in_reply_to=reply.message_id,
                                    references=["ann-1@example.org", reply.message_id], text="Thanks!"))
    by_token = receive(mail_bytes(sender="ann@example.org", subject=f"Re: {sent['Subject']}", text="Again"))
    assert by_headers.case_id == by_token.case_id == case.pk
    assert Message.objects.filter(case=case).count() == 4


@pytest.mark.django_db
def test_a_failed_send_retries_with_backoff_and_shows_on_the_message(settings, inbound):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", _free_port(), 5
    settings.CASEHUB_EMAIL_SEND_MAX_RETRIES = 1
    case = customer_mail().case
    reply = services.message_send_from_agent(case=case, user=AgentFactory().user, text="On it")

    before = timezone.now()
    assert services.message_deliver(message_id=reply.pk) == "retry"
    reply.refresh_from_db()
    assert (reply.delivery_status, reply.delivery_attempts) == (DeliveryStatus.PENDING, 1)
    assert "ConnectionRefusedError" in reply.delivery_error
    assert reply.delivery_due_at >= before + timedelta(seconds=30)
    assert 0 < services.message_delivery_countdown(message_id=reply.pk) <= 30
    assert delivery_backoff_s(1) < delivery_backoff_s(2) < delivery_backoff_s(3) <= 3600

    assert services.message_deliver(message_id=reply.pk) == "failed"
    reply.refresh_from_db()
    assert (reply.delivery_status, reply.delivery_attempts) == (DeliveryStatus.FAILED, 2)
    assert services.message_deliver(message_id=reply.pk) == "skipped"
    client = Client()
    client.force_login(AgentFactory().user)
    page = client.get(f"/admin/cases/case/{case.pk}/change/").content.decode()
    assert "email failed to ann@example.org (2 attempts; last error: ConnectionRefusedError" in page


@pytest.mark.django_db
def test_the_requeue_job_sends_replies_whose_task_never_ran(mailbox, inbound, monkeypatch):
    case = customer_mail().case
    stuck = services.message_send_from_agent(case=case, user=AgentFactory().user, text="Sorry for the wait")
    fresh = services.message_send_from_agent(case=case, user=AgentFactory().user, text="Still here")
    # As if the broker had been down when `stuck` was stored: due long ago, never sent.
    Message.objects.filter(pk=stuck.pk).update(delivery_due_at=timezone.now() - timedelta(minutes=10))
    monkeypatch.setitem(current_app.conf, "task_always_eager", True)
    assert services.messages_deliver_pending() == [stuck.pk]
    stuck.refresh_from_db()
    assert stuck.delivery_status == DeliveryStatus.SENT and len(mailbox.received) == 1
    assert Message.objects.get(pk=fresh.pk).delivery_status == DeliveryStatus.PENDING


@pytest.mark.slow
def test_a_worker_killed_mid_send_loses_nothing(transactional_db, inbound, monkeypatch):
    mailbox = Mailbox(hold_first=True)
    with smtp_server(mailbox) as port:
        # The worker reads its settings from the environment it starts with.
        monkeypatch.setenv("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
        monkeypatch.setenv("EMAIL_HOST", "127.0.0.1")
        monkeypatch.setenv("EMAIL_PORT", str(port))
        with celery_worker(["default"], concurrency=1) as (proc, _node):
            case = customer_mail().case
            # Committed at once (no test transaction): the send task goes to the worker.
            reply = services.message_send_from_agent(case=case, user=AgentFactory().user, text="Kept safe")
            assert mailbox.first_arrived.wait(120), "the worker never started sending"
            children = psutil.Process(proc.pid).children(recursive=True)
            assert children
            for child in children:
                child.send_signal(signal.SIGKILL)
            mailbox.release.set()

            def delivered():
                reply.refresh_from_db()
                return reply.delivery_status == DeliveryStatus.SENT

            wait_for(delivered, "the redelivered send")
    assert mailbox.attempts == 2 and len(mailbox.received) == 1
    assert mailbox.received[0]["Message-ID"] == f"<{reply.message_id}>"
    # The killed attempt wrote nothing: one attempt counted, the one that succeeded.
    assert (reply.delivery_attempts, reply.delivery_error) == (1, "")
