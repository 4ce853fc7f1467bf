"""The conversation of a case: every email and Support Hub message is one Message, written only
through this module (inbound mail through email_in.py, which builds on it), each with its
`message` timeline event in the same transaction. Agents' replies are emailed after commit by
email_out.py."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from apps.cases import selectors
from apps.cases.models import (
    Attachment,
    Case,
    CaseEvent,
    DeliveryStatus,
    EventKind,
    Location,
    Message,
    MessageDirection,
    MessageSource,
    Status,
)
from apps.cases.services._events import _case_lock, _event, _events_write
from apps.cases.services.cases import _require_here, _transition
from apps.cases.services.queue_configs import _active_config
from apps.core.errors import ApplicationError, NotFound
from apps.core.input import storable_text_error
from apps.core.scheduling import task_send_on_commit
from apps.core.uploads import CheckedUpload, UploadRefused, upload_check
from apps.merchants.mail import html_sanitize, reply_extract
from apps.merchants.selectors import merchant_for_user

# Outbound subjects carry the case's token, so a reply whose client dropped the threading
# headers still finds its case. A UUID: unguessable, and one case only.
CASE_TOKEN = re.compile(
    r"\[case:([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\]", re.IGNORECASE)
_REPLY_PREFIX = re.compile(r"^\s*((re|fwd?|aw|wg|sv|vs)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
PREVIEW_CHARS = 140
MAX_TEXT_CHARS = 100_000  # a hub or agent message; longer is a paste accident, not a message
MAX_REFERENCES = 30  # ids carried in an outbound References header (the oldest are dropped)
# Column limits (apps.cases.models.Message): longer header values are cut, never a DataError.
_ID_CHARS, _ADDRESS_CHARS, _NAME_CHARS, _SUBJECT_CHARS = 998, 320, 200, 998


# Shared pieces -------------------------------------------------------------------------------


def case_token(case: Case) -> str:
    return f"[case:{case.pk}]"


def subject_with_token(subject: str, case: Case) -> str:
    """`Re: <subject> [case:<id>]`: one reply prefix, one token."""
    base = " ".join(CASE_TOKEN.sub("", _REPLY_PREFIX.sub("", subject or "")).split()) or "Your request"
    return f"Re: {base} {case_token(case)}"[:_SUBJECT_CHARS]


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1].rstrip() + "…"


def _reply_fields(text: str, html: str) -> dict[str, Any]:
    """The newest reply of a body, extracted once here so that reading a thread never parses mail."""
    reply = reply_extract(text or "", html or "")
    return {"latest_reply_text": reply.text, "latest_reply_html": reply.html,
            "has_quoted_history": reply.has_quoted_history}


def _message_event(message: Message, actor, *, attachments: int = 0) -> CaseEvent:
    flags = {name: True for name in ("is_auto_reply", "is_bounce") if getattr(message, name)}
    if message.source == MessageSource.AGENT and not message.merchant_visible:
        flags["internal"] = True  # an internal note is no response to the customer
    return _event(message.case, EventKind.MESSAGE, actor, message=message.pk, direction=message.direction,
                  source=message.source, preview=_preview(message.latest_reply_text or message.text_body),
                  attachments=attachments, **flags)


def _reopen_events(case: Case, actor) -> list[CaseEvent]:
    """A person writing on a resolved (or closed) case reopens it, where its queue allows."""
    if case.status not in (Status.RESOLVED, Status.CLOSED) or case.location != Location.CASEHUB:
        return []
    config = _active_config(case.queue_id)
    if Status.REOPENED not in config.transitions.get(case.status, []):
        return []
    return _transition(case, Status.REOPENED, actor, config)


def _uploads_check(files: Iterable, *, field: str = "files") -> list[CheckedUpload]:
    """Check files a person sends; any refusal fails the request with a message per file."""
    files = list(files or ())
    limit = settings.CASEHUB_ATTACHMENT_MAX_COUNT
    if len(files) > limit:
        raise ApplicationError("Too many files.", errors={field: [f"At most {limit} files per message."]})
    checked, problems = [], []
    for upload in files:
        try:
            checked.append(upload_check(getattr(upload, "name", "") or "", upload,
                                        max_bytes=settings.CASEHUB_ATTACHMENT_MAX_BYTES))
        except UploadRefused as exc:
            problems.append(str(exc))
    if problems:
        raise ApplicationError("A file cannot be attached.", errors={field: problems})
    return checked


def _text_errors(text: str, *, required: bool) -> list[str]:
    if not isinstance(text, str):
        return ["Must be text."]
    if problem := storable_text_error(text):
        return [problem]
    if len(text) > MAX_TEXT_CHARS:
        return [f"At most {MAX_TEXT_CHARS} characters."]
    if required and not text.strip():
        return ["Write a message or attach a file."]
    return []


def _attachments_store(message: Message, uploads: list[tuple[CheckedUpload, str, bool]],
                       written: list[str]) -> list[Attachment]:
    """Write the files to storage (under generated names) and insert their rows; `written` gets
    each stored name, so a caller whose transaction fails can remove them again."""
    rows = []
    for checked, content_id, inline in uploads:
        row = Attachment(message=message, case_id=message.case_id, filename=checked.safe_name,
                         content_type=checked.content_type, size=checked.size, sha256=checked.sha256,
                         content_id=content_id[:_ID_CHARS], inline=inline)
        row.file.save(checked.storage_name, ContentFile(checked.content), save=False)
        written.append(row.file.name)
        rows.append(row)
    return Attachment.objects.bulk_create(rows) if rows else []


def _files_remove(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)


def _stored(write, *args, **kwargs):
    """Run a write that stores files; when it fails, no file it wrote stays behind."""
    written: list[str] = []
    try:
        return write(*args, written=written, **kwargs)
    except BaseException:
        _files_remove(written)
        raise


# Agents recording a message (no email) ---------------------------------------------------------


def message_record(*, case: Case, body: str, direction: str = MessageDirection.OUTBOUND,
                   actor=None) -> Message:
    """A message an agent records on the case (what was said on the phone or in a chat): stored and
    on the timeline, never emailed. The first outbound one is the case's first response."""
    if direction not in MessageDirection.values:
        raise ApplicationError("Unknown direction.", errors={"direction": ["outbound or inbound"]})
    if not isinstance(body, str) or not body.strip():
        raise ApplicationError("A message needs text.", errors={"body": ["This field is required."]})
    if errors := _text_errors(body, required=True):
        raise ApplicationError("The message cannot be stored.", errors={"body": errors})
    with transaction.atomic():
        case = _case_lock(case)
        _require_here(case)
        now = timezone.now()
        if direction == MessageDirection.OUTBOUND and case.first_response_at is None:
            case.first_response_at = now
            case.save(update_fields=["first_response_at", "updated_at"])
        message = Message.objects.create(
            case=case, direction=direction, source=MessageSource.AGENT,
            sender_user=actor if getattr(actor, "pk", None) else None, subject=case.subject[:_SUBJECT_CHARS],
            text_body=body, sent_at=now, **_reply_fields(body, ""))
        _events_write([_message_event(message, actor)])
    return message


# Support Hub -----------------------------------------------------------------------------------


def message_post_from_hub(*, case: Case, user, text: str, files: list) -> Message:
    """A merchant user's reply in the Support Hub, with files. It reopens a resolved case (where the
    queue allows) and, after commit, emails the case's agent."""
    merchant = merchant_for_user(user)
    if merchant is None or merchant.external_id != case.merchant_ref:
        raise NotFound("Case not found.")
    errors = {"text": problems} if (problems := _text_errors(text, required=not files)) else {}
    try:
        uploads = _uploads_check(files)
    except ApplicationError as exc:
        errors.update(exc.errors)
    if errors:
        raise ApplicationError("The message cannot be sent.", errors=errors)
    return _stored(_post_from_hub, case, user, text, uploads)


@transaction.atomic
def _post_from_hub(case: Case, user, text: str, uploads: list[CheckedUpload], *,
                   written: list[str]) -> Message:
    case = _case_lock(case)
    events = _reopen_events(case, user)
    if events:
        case.save()
    message = Message.objects.create(
        case=case, direction=MessageDirection.INBOUND, source=MessageSource.HUB, sender_user=user,
        sender_address=(user.email or "")[:_ADDRESS_CHARS],
        sender_name=(user.get_full_name() or user.get_username())[:_NAME_CHARS],
        subject=case.subject[:_SUBJECT_CHARS], text_body=text, sent_at=timezone.now(),
        **_reply_fields(text, ""))
    stored = _attachments_store(message, [(u, "", False) for u in uploads], written)
    _events_write([*events, _message_event(message, user, attachments=len(stored))])
    if case.assigned_agent_id is not None:
        task_send_on_commit("apps.cases.tasks.message_notify_agent", message.pk)
    return message


# Agents' replies -------------------------------------------------------------------------------


def message_send_from_agent(*, case: Case, user, text: str, html: str = "", files=(),
                            internal: bool = False) -> Message:
    """An agent's reply, stored at once. Unless `internal` (a note merchants never see), and when
    the case has someone to write to (the sender of its newest mail), it is emailed after commit
    by a task that retries with backoff; `delivery_status` shows how that goes."""
    errors = {}
    if problems := _text_errors(text, required=not files and not (html or "").strip()):
        errors["text"] = problems
    if html and (problems := _text_errors(html, required=False)):
        errors["html"] = problems
    try:
        uploads = _uploads_check(files)
    except ApplicationError as exc:
        errors.update(exc.errors)
    if errors:
        raise ApplicationError("The reply cannot be sent.", errors=errors)
    return _stored(_send_from_agent, case, user, text, html_sanitize(html) if html else "", uploads, internal)


@transaction.atomic
def _send_from_agent(case: Case, user, text: str, html: str, uploads: list[CheckedUpload], internal: bool,
                     *, written: list[str]) -> Message:
    case = _case_lock(case)
    _require_here(case)
    now = timezone.now()
    target = None if internal else selectors.message_reply_target(case)
    agent = getattr(user, "agent", None)
    message = Message(
        case=case, direction=MessageDirection.OUTBOUND, source=MessageSource.AGENT, sender_user=user,
        sender_address=settings.DEFAULT_FROM_EMAIL[:_ADDRESS_CHARS],
        sender_name=(getattr(agent, "display_name", "") or user.get_full_name() or user.get_username())[
            :_NAME_CHARS],
        subject=case.subject[:_SUBJECT_CHARS], text_body=text, html_body=html, sent_at=now,
        merchant_visible=not internal, **_reply_fields(text, html))
    if target is not None:
        message.to_addresses = [target.sender_address]
        message.subject = subject_with_token(case.subject or target.subject, case)
        message.message_id = f"{uuid.uuid4().hex}@{settings.CASEHUB_EMAIL_DOMAIN}"
        message.in_reply_to = target.message_id
        message.references = [*target.references, target.message_id][-MAX_REFERENCES:]
        message.delivery_status = DeliveryStatus.PENDING
        message.delivery_due_at = now
    message.save()
    if not internal and case.first_response_at is None:
        case.first_response_at = now
        case.save(update_fields=["first_response_at", "updated_at"])
    stored = _attachments_store(message, [(u, "", False) for u in uploads], written)
    _events_write([_message_event(message, user, attachments=len(stored))])
    if target is not None:
        task_send_on_commit("apps.cases.tasks.message_deliver", message.pk)
    return message
