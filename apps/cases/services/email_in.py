"""Inbound email: a raw RFC 822 mail from the provider's webhook becomes a Message on the case it
answers (by its threading headers or the case token in its subject), or opens a new case."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.utils import timezone

from apps.cases import selectors
from apps.cases.models import (
    Case,
    CaseEvent,
    Channel,
    Message,
    MessageDirection,
    MessageSource,
    Queue,
    Source,
)
from apps.cases.services._events import _case_lock, _events_write
from apps.cases.services.cases import case_create
from apps.cases.services.messages import (
    _ADDRESS_CHARS,
    _ID_CHARS,
    _NAME_CHARS,
    _SUBJECT_CHARS,
    CASE_TOKEN,
    MAX_REFERENCES,
    _attachments_store,
    _message_event,
    _reopen_events,
    _reply_fields,
    _stored,
)
from apps.core.errors import ApplicationError, Conflict, InvalidInput
from apps.core.feed import feed_writer_enter
from apps.core.uploads import CheckedUpload, UploadRefused, safe_filename, upload_check
from apps.merchants.mail import EmailParseError, ParsedEmail, html_sanitize, message_parse

# Advisory-lock class of inbound Message-IDs (the two-int4 key space, apart from the feed's).
_MESSAGE_ID_LOCK_CLASS = 0x4D53
# The account the webhook acts as (its Idempotency-Keys belong to it). A name the admin's user
# forms refuse (the colon), so no person can be given it.
INBOUND_EMAIL_USERNAME = "system:inbound-email"


def inbound_email_user():
    """The webhook's own account: active, no password, no role."""
    user, created = get_user_model()._default_manager.get_or_create(
        username=INBOUND_EMAIL_USERNAME, defaults={"is_active": True})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user


@dataclass(frozen=True)
class InboundResult:
    message: Message | None
    case: Case | None
    created_case: bool
    duplicate: bool
    # Why nothing was stored (an auto-reply or bounce that belongs to no case); "" when stored.
    ignored: str = ""


def message_receive_email(*, raw: bytes) -> InboundResult:
    """Store one raw RFC 822 mail on its case.

    A Message-ID seen before stores nothing (duplicate). The case is found by In-Reply-To and
    References among stored messages, then by the case token in the subject; otherwise a new
    case opens in the CASEHUB_INBOUND_QUEUE queue, linked to the merchant whose user sent it.
    Auto-replies and bounces are stored flagged and hidden from merchants; they never open or
    reopen a case (one that threads nowhere is dropped). Attachments the upload rules refuse are
    dropped and noted on the message; they never fail the mail.
    """
    try:
        parsed = message_parse(raw)
    except EmailParseError as exc:
        raise InvalidInput("The email cannot be read.", errors={"email": [str(exc)]},
                           code="parse_error") from None
    message_id = _inbound_message_id(parsed, raw)
    uploads, dropped = _mail_attachments(parsed)
    return _stored(_receive, parsed, message_id, uploads, dropped)


@transaction.atomic
def _receive(parsed: ParsedEmail, message_id: str, uploads, dropped, *, written: list[str]) -> InboundResult:
    feed_writer_enter(CaseEvent)
    with connection.cursor() as cursor:
        # Two deliveries of one mail at once: the second waits here, then finds the first's row.
        cursor.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", [_MESSAGE_ID_LOCK_CLASS, message_id])
    existing = Message.objects.filter(message_id=message_id).select_related("case").first()
    if existing is not None:
        return InboundResult(message=existing, case=existing.case, created_case=False, duplicate=True)
    automatic = parsed.is_auto_reply or parsed.is_bounce
    case_id = _thread_case_id(parsed)
    if case_id is None and automatic:
        reason = "A bounce" if parsed.is_bounce else "An auto-reply"
        return InboundResult(message=None, case=None, created_case=False, duplicate=False,
                             ignored=f"{reason} that belongs to no case: not stored.")
    created = case_id is None
    case = _case_lock(_case_for_new_mail(parsed) if created else case_id)
    events = [] if automatic or created else _reopen_events(case, None)
    if events:
        case.save()
    message = Message.objects.create(
        case=case, direction=MessageDirection.INBOUND, source=MessageSource.EMAIL,
        sender_address=parsed.from_address[:_ADDRESS_CHARS], sender_name=parsed.from_name[:_NAME_CHARS],
        to_addresses=_addresses(parsed.to), cc_addresses=_addresses(parsed.cc),
        subject=parsed.subject[:_SUBJECT_CHARS], message_id=message_id,
        in_reply_to=(parsed.in_reply_to[0] if parsed.in_reply_to else "")[:_ID_CHARS],
        references=[ref[:_ID_CHARS] for ref in parsed.references[-MAX_REFERENCES:]],
        # HTML is stored sanitised: no reader of the store can show a sender's script.
        text_body=parsed.text, html_body=html_sanitize(parsed.html) if parsed.html else "",
        merchant_visible=not automatic, is_auto_reply=parsed.is_auto_reply, is_bounce=parsed.is_bounce,
        sent_at=parsed.sent_at or timezone.now(), dropped_attachments=dropped,
        **_reply_fields(parsed.text, parsed.html))
    stored = _attachments_store(message, uploads, written)
    _events_write([*events, _message_event(message, None, attachments=len(stored))])
    return InboundResult(message=message, case=case, created_case=created, duplicate=False)


def _inbound_message_id(parsed: ParsedEmail, raw: bytes) -> str:
    """The mail's own Message-ID; one made from its bytes when it has none (or an absurd one), so a
    provider's retry of the same mail is still recognised."""
    if parsed.message_id and len(parsed.message_id) <= _ID_CHARS:
        return parsed.message_id
    return f"{hashlib.sha256(bytes(raw)).hexdigest()}@inbound.casehub.invalid"


def _addresses(addresses: Iterable[str]) -> list[str]:
    return [a for a in addresses if len(a) <= _ADDRESS_CHARS][:100]


def _thread_case_id(parsed: ParsedEmail):
    """The case a mail answers: its In-Reply-To, then its References newest first, then the
    subject's case token."""
    ids = list(dict.fromkeys([*parsed.in_reply_to, *reversed(parsed.references)]))[:200]
    found = selectors.message_cases_by_message_id([i for i in ids if len(i) <= _ID_CHARS])
    for message_id in ids:
        if message_id in found:
            return found[message_id]
    for match in CASE_TOKEN.finditer(parsed.subject):
        case_id = uuid.UUID(match.group(1))
        if Case.objects.filter(pk=case_id).exists():
            return case_id
    return None


def _case_for_new_mail(parsed: ParsedEmail) -> Case:
    slug = settings.CASEHUB_INBOUND_QUEUE
    queue = Queue.objects.filter(slug=slug, is_active=True).first()
    if queue is None:
        raise Conflict(f"No active queue '{slug}' takes new inbound email.",
                       errors={"queue": ["Set CASEHUB_INBOUND_QUEUE to the slug of an active queue."]},
                       code="no_inbound_queue")
    subject = CASE_TOKEN.sub("", parsed.subject).strip()
    try:
        return case_create(queue=queue, fields={}, source=Source.EMAIL, channel=Channel.EMAIL,
                           subject=subject[: Case._meta.get_field("subject").max_length],
                           merchant_ref=selectors.merchant_ref_for_address(parsed.from_address))
    except ApplicationError as exc:
        detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items())
        raise Conflict(f"Queue '{slug}' cannot open a case from an email: {exc.message} {detail}".strip(),
                       errors={"queue": ["The inbound queue must accept a case without fields."]},
                       code="no_inbound_queue") from None


def _mail_attachments(parsed: ParsedEmail) -> tuple[list[tuple[CheckedUpload, str, bool]], list[dict]]:
    """The mail's files the upload rules accept, and a note for each one dropped."""
    kept, dropped = [], []
    limit = settings.CASEHUB_ATTACHMENT_MAX_COUNT
    for part in parsed.attachments:
        try:
            checked = upload_check(part.filename, part.content,
                                   max_bytes=settings.CASEHUB_ATTACHMENT_MAX_BYTES)
        except UploadRefused as exc:
            dropped.append({"filename": safe_filename(part.filename), "reason": str(exc)})
            continue
        if len(kept) >= limit:
            dropped.append({"filename": checked.safe_name,
                            "reason": f"{checked.safe_name} is one file too many: at most {limit} per mail."})
            continue
        kept.append((checked, part.content_id or "", bool(part.inline)))
    return kept, dropped


