"""Mail that leaves Casehub through Django's email backend: agents' replies (with their threading
headers and the case token, retried with backoff, their state on the Message) and the note that
tells an agent a merchant wrote. Called by the tasks in apps.cases.tasks."""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta
from typing import Literal

from django.conf import settings
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from apps.cases.models import DeliveryStatus, Message
from apps.core.scheduling import task_send

logger = logging.getLogger(__name__)

# What a failed send raises: the SMTP conversation, the socket under it, or a timeout.
SEND_ERRORS: tuple[type[BaseException], ...] = (smtplib.SMTPException, OSError)
# A pending send whose due time is this far past never reached a worker: the requeue job sends it.
REQUEUE_AFTER = timedelta(minutes=2)
MAX_BACKOFF_S = 3600

DeliveryOutcome = Literal["sent", "retry", "failed", "busy", "skipped"]


def delivery_backoff_s(attempts: int) -> int:
    """Seconds before the next try after `attempts` failed ones: 30 s, 1 min, 2 min, ... 1 h."""
    return min(MAX_BACKOFF_S, 30 * 2 ** max(0, attempts - 1))


def message_deliver(*, message_id: int) -> DeliveryOutcome:
    """Send one pending agent reply by email; safe to call again at any time.

    The row stays locked while the mail is handed to the SMTP server, and its new state commits
    after: a worker that dies mid-send leaves the message pending (its transaction rolls back),
    and the redelivered task sends it again with the same Message-ID, which mail clients
    de-duplicate. Nothing is marked sent that was not. A second task for the same message finds
    the row locked ("busy": retry later) or no longer pending ("skipped").
    """
    with transaction.atomic():
        message = (Message.objects.select_for_update(skip_locked=True)
                   .filter(pk=message_id, delivery_status=DeliveryStatus.PENDING).first())
        if message is None:
            pending = Message.objects.filter(pk=message_id, delivery_status=DeliveryStatus.PENDING).exists()
            return "busy" if pending else "skipped"
        message.delivery_attempts += 1
        fields = ["delivery_attempts", "delivery_status", "delivery_error", "delivery_due_at", "delivered_at"]
        try:
            _outbound_email(message).send()
        except (*SEND_ERRORS, ValueError) as exc:
            message.delivery_error = f"{type(exc).__name__}: {exc}"[:2000]
            # A ValueError (a header Django refuses) fails the same way every time: no retry.
            last = isinstance(exc, ValueError) and not isinstance(exc, OSError)
            if last or message.delivery_attempts > settings.CASEHUB_EMAIL_SEND_MAX_RETRIES:
                message.delivery_status = DeliveryStatus.FAILED
                message.delivery_due_at = None
                message.save(update_fields=fields)
                logger.error("giving up sending message %s: %s", message.pk, message.delivery_error)
                return "failed"
            message.delivery_due_at = timezone.now() + timedelta(
                seconds=delivery_backoff_s(message.delivery_attempts))
            message.save(update_fields=fields)
            return "retry"
        message.delivery_status = DeliveryStatus.SENT
        message.delivery_error = ""
        message.delivery_due_at = None
        message.delivered_at = timezone.now()
        message.save(update_fields=fields)
        return "sent"


def message_delivery_countdown(*, message_id: int) -> int:
    """Seconds until a pending message is due again (0 when it is due or not pending)."""
    due = Message.objects.filter(pk=message_id).values_list("delivery_due_at", flat=True).first()
    if due is None:
        return 0
    return max(0, int((due - timezone.now()).total_seconds()))


def _outbound_email(message: Message) -> EmailMultiAlternatives:
    headers = {"Message-ID": f"<{message.message_id}>"}
    if message.in_reply_to:
        headers["In-Reply-To"] = f"<{message.in_reply_to}>"
    if message.references:
        headers["References"] = " ".join(f"<{ref}>" for ref in message.references)
    email = EmailMultiAlternatives(
        subject=message.subject, body=message.text_body, from_email=settings.DEFAULT_FROM_EMAIL,
        to=list(message.to_addresses), cc=list(message.cc_addresses), headers=headers,
    )
    if message.html_body:
        email.attach_alternative(message.html_body, "text/html")
    for attachment in message.attachments.order_by("id"):
        with attachment.file.open("rb") as stored:
            email.attach(attachment.filename, stored.read(), attachment.content_type)
    return email


def messages_deliver_pending(*, limit: int = 500) -> list[int]:
    """Beat job: queue the send of replies still pending well after they were due (the broker was
    down when they were stored, or their task was lost). A duplicate task is harmless."""
    overdue = timezone.now() - REQUEUE_AFTER
    ids = list(Message.objects.filter(delivery_status=DeliveryStatus.PENDING)
               .filter(Q(delivery_due_at__lt=overdue) | Q(delivery_due_at__isnull=True))
               .order_by("id").values_list("id", flat=True)[:limit])
    for message_id in ids:
        task_send("apps.cases.tasks.message_deliver", message_id)
    return ids


def message_notify_agent(*, message_id: int) -> bool:
    """Email the case's assigned agent that a merchant wrote on it; False when there is no one."""
    message = (Message.objects.select_related("case__assigned_agent__user", "sender_user")
               .filter(pk=message_id).first())
    agent = message.case.assigned_agent if message is not None else None
    address = agent.user.email if agent is not None else ""
    if not address:
        return False
    case = message.case
    link = reverse("admin:cases_case_change", args=[case.pk])
    base = settings.CASEHUB_BASE_URL.rstrip("/")
    body = (f"{message.sender_name or message.sender_address} wrote on case {str(case.pk)[:8]} "
            f"({case.subject or 'no subject'}):\n\n{message.latest_reply_text or message.text_body}\n\n"
            f"Open the case: {base}{link}\n")
    EmailMessage(
        subject=" ".join(f"New message on case {str(case.pk)[:8]}: {case.subject}".split())[:200], body=body,
        from_email=settings.DEFAULT_FROM_EMAIL, to=[address],
        # RFC 3834: an automatic message, so vacation responders do not answer it.
        headers={"Auto-Submitted": "auto-generated"},
    ).send()
    return True
