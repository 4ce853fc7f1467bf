"""Raw RFC 822 bytes from the inbound webhook to a ParsedEmail: threading headers, addresses,
the best text and HTML bodies, attachments, and whether the mail is an auto-reply or a bounce."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import Message
from email.parser import BytesParser

from apps.merchants.mail import headers
from apps.merchants.mail.headers import text_storable

# Real mail nests a handful of levels (mixed > alternative > related > ...); anything deeper is
# built to exhaust a walker, so its deeper parts are ignored instead of followed.
MAX_MIME_DEPTH = 32

# A body with none of these headers is some other text that happens to contain a colon.
MESSAGE_HEADERS = frozenset({
    "from", "to", "cc", "subject", "date", "message-id", "in-reply-to", "references", "sender",
    "reply-to", "return-path", "received", "mime-version", "content-type", "delivered-to",
})

# Subjects mail servers give out-of-office and vacation answers, when they set no header at all.
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(?:"
    r"out of (?:the )?office|automatic reply|auto(?:matic)?[ -]?(?:reply|response)|autoreply|auto:"
    r"|abwesenheitsnotiz|automatische antwort|r[ée]ponse automatique|absence du bureau"
    r"|respuesta autom[áa]tica|fuera de la oficina|resposta autom[áa]tica|risposta automatica"
    r"|automatisch antwoord|afwezigheidsbericht|automatiskt svar|autosvar|automatyczna odpowied[źz]"
    r"|автоответ|автоматический ответ|自动回复|自動回覆|自動返信|自動応答"
    r")",
    re.IGNORECASE,
)
_AUTO_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk", "list"})
_FALSE_FLAGS = frozenset({"", "no", "false", "0"})
_BOUNCE_SENDERS = frozenset({"mailer-daemon", "postmaster"})
_DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})


class EmailParseError(ValueError):
    """Bytes that are not an email message; str(error) says why, in words a user can act on."""


@dataclass(frozen=True)
class Attachment:
    filename: str  # as the sender named it, "" if none; making it safe to store is the caller's job
    content_type: str
    content: bytes
    content_id: str | None  # without <>, what an HTML body's cid: URLs point at
    inline: bool


@dataclass(frozen=True)
class ParsedEmail:
    message_id: str | None  # without <>; None when absent or blank
    in_reply_to: tuple[str, ...]  # ids without <>
    references: tuple[str, ...]  # ids without <>, in header order, each once
    subject: str  # RFC 2047 decoded, whitespace collapsed
    from_address: str  # lowercased addr-spec, "" when absent or unparseable
    from_name: str
    to: tuple[str, ...]  # lowercased addresses
    cc: tuple[str, ...]
    sent_at: datetime | None  # from Date:, in UTC; None when absent or invalid
    text: str  # the text/plain body, decoded; "" if none
    html: str  # the text/html body, decoded and NOT sanitised; "" if none
    attachments: tuple[Attachment, ...]
    is_auto_reply: bool  # RFC 3834 headers, X-Autoreply/-Autorespond, Precedence, OOO subjects
    is_bounce: bool  # a delivery status notification


def message_parse(raw: bytes) -> ParsedEmail:
    """Parse one raw message. Raises EmailParseError, and nothing else, for any input.

    Every string returned can be stored in PostgreSQL. Undecodable bytes become U+FFFD, broken
    headers become "" or None, and parts nested deeper than MAX_MIME_DEPTH are ignored: a
    damaged message still yields what can be read of it.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise EmailParseError("The message must be raw bytes (RFC 822).")
    # Webhooks and copy-paste sometimes prepend a BOM or blank lines, which would end the headers.
    data = bytes(raw).removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n")
    if not data.strip():
        raise EmailParseError("The message is empty.")
    with_body = True
    try:
        try:
            message = BytesParser(policy=headers.POLICY).parsebytes(data)
        except RecursionError:
            # MIME nested past Python's recursion limit: the headers alone still thread the mail.
            message = BytesParser(policy=headers.POLICY).parsebytes(data, headersonly=True)
            with_body = False
    except Exception as exc:  # the parser is lenient; this is a last resort, never expected
        raise EmailParseError(f"The message could not be read: {type(exc).__name__}.") from None
    names = {name.lower() for name, _ in headers.raw_items(message)}
    if not names & MESSAGE_HEADERS:
        raise EmailParseError(
            "This is not an email message: it has no email headers (From, To, Subject, ...)."
        )
    try:
        return _parsed(message, with_body=with_body)
    except RecursionError:
        raise EmailParseError("The message is nested too deeply to be read.") from None
    except Exception as exc:  # every step below has its own fallback; this guards the contract
        raise EmailParseError(f"The message could not be read: {type(exc).__name__}.") from None


def _parsed(message: Message, *, with_body: bool) -> ParsedEmail:
    from_name, from_address = headers.sender(message)
    parts = list(_leaves(message)) if with_body else []
    text, html, attachments = _bodies_and_attachments(parts)
    ids = headers.ids(headers.raw_header(message, "Message-ID"))
    subject = " ".join(headers.header(message, "Subject").split())
    return ParsedEmail(
        message_id=ids[0] if ids else None,
        in_reply_to=headers.ids(headers.raw_header(message, "In-Reply-To")),
        references=headers.ids(headers.raw_header(message, "References")),
        subject=subject,
        from_address=from_address,
        from_name=from_name,
        to=headers.addresses(message, "To"),
        cc=headers.addresses(message, "Cc"),
        sent_at=headers.sent_at(message),
        text=text,
        html=html,
        attachments=attachments,
        is_auto_reply=_is_auto_reply(message, subject),
        is_bounce=_is_bounce(message, from_address, parts),
    )


def _decode(payload: bytes, charset: str | None) -> str:
    """Bytes in the declared charset; an unknown or wrong one still gives text, with U+FFFD."""
    text = None
    if charset:
        try:
            text = payload.decode(charset, errors="replace")
        except (LookupError, ValueError, TypeError):  # unknown name, or not a text codec
            text = None
    if text is None:
        # Undeclared mostly means UTF-8 today, and Windows-1252 from older clients.
        try:
            text = payload.decode("utf-8")
        except UnicodeDecodeError:
            text = payload.decode("cp1252", errors="replace")
    return text_storable(text.replace("\r\n", "\n").replace("\r", "\n"))


# --- auto-replies and bounces -------------------------------------------------------------------

def _flag(message: Message, name: str) -> str:
    return headers.header(message, name).split(";")[0].strip().lower()


def _is_auto_reply(message: Message, subject: str) -> bool:
    if _flag(message, "Auto-Submitted") not in _FALSE_FLAGS:  # RFC 3834: anything but "no"
        return True
    if any(_flag(message, name) not in _FALSE_FLAGS for name in ("X-Autoreply", "X-Autorespond")):
        return True
    if _flag(message, "X-Autogenerated") == "reply":
        return True
    if _flag(message, "Precedence") in _AUTO_PRECEDENCE:
        return True
    return bool(_AUTO_REPLY_SUBJECT.match(subject))


def _is_bounce(message: Message, from_address: str, parts: list[_Leaf]) -> bool:
    if _content_type(message) == "multipart/report":
        try:
            report_type = str(message.get_param("report-type", "") or "").lower()
        except Exception:
            report_type = ""
        if report_type in ("delivery-status", "global-delivery-status"):
            return True
    if not any(leaf.content_type in _DSN_TYPES for leaf in parts):
        return False
    if from_address.partition("@")[0] in _BOUNCE_SENDERS:
        return True
    return headers.header(message, "Return-Path").strip() == "<>"


# --- MIME tree ---------------------------------------------------------------------------------

@dataclass
class _Leaf:
    part: Message
    content_type: str
    alternative: int | None  # id() of the nearest multipart/alternative holding it


def _leaves(root: Message) -> Iterator[_Leaf]:
    """Non-multipart parts in document order, depth-first, without recursion and depth-capped.

    An attached message (message/rfc822) is one leaf: its own bodies are not this mail's body.
    """
    stack: list[tuple[Message, int, int | None]] = [(root, 0, None)]
    while stack:
        part, depth, alternative = stack.pop()
        content_type = _content_type(part)
        payload = part.get_payload()
        if content_type.startswith("multipart/"):
            if not isinstance(payload, list):  # no boundary found: its raw text is all there is
                yield _Leaf(part, "text/plain", alternative)
                continue
            if depth >= MAX_MIME_DEPTH:
                continue
            inner = id(part) if content_type == "multipart/alternative" else alternative
            stack.extend((child, depth + 1, inner) for child in reversed(payload)
                         if isinstance(child, Message))
            continue
        yield _Leaf(part, content_type, alternative)


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:
        return "application/octet-stream"


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def _content(leaf: _Leaf) -> bytes:
    part = leaf.part
    try:
        if leaf.content_type.startswith("message/"):
            payload = part.get_payload()
            if isinstance(payload, list):  # a parsed attached message: its bytes as sent
                # compat32 writes headers back as they came; the default policy would refold them.
                return b"".join(p.as_bytes(policy=policy.compat32) for p in payload if isinstance(p, Message))
        content = part.get_payload(decode=True)
        if isinstance(content, bytes):
            return content
    except Exception:
        pass
    return b""


def _charset(part: Message) -> str | None:
    try:
        return part.get_content_charset()
    except Exception:
        return None


def _bodies_and_attachments(leaves: list[_Leaf]) -> tuple[str, str, tuple[Attachment, ...]]:
    """The text and HTML bodies, and the other parts as attachments.

    A body part is inline text/plain or text/html without a file name. The first of each kind
    is the body; a later one is appended when it is not another rendering of the same content
    (a different multipart/alternative, or none: Apple Mail splits a body around inline images).
    """
    bodies: dict[str, list[str]] = {"text/plain": [], "text/html": []}
    body_alternative: dict[str, int | None] = {}
    attachments: list[Attachment] = []
    for leaf in leaves:
        disposition = _disposition(leaf.part)
        filename = headers.filename(leaf.part)
        if leaf.content_type in _DSN_TYPES:
            continue  # a bounce's machine-readable status: read by _is_bounce, not shown
        if leaf.content_type in bodies and disposition != "attachment" and not filename:
            kind = leaf.content_type
            if not bodies[kind] or leaf.alternative is None or leaf.alternative != body_alternative[kind]:
                content = _content(leaf)
                bodies[kind].append(_decode(content, _charset(leaf.part)))
                body_alternative[kind] = leaf.alternative
            continue
        content_id = headers.ids(headers.raw_header(leaf.part, "Content-ID"))
        attachments.append(Attachment(
            filename=filename,
            content_type=leaf.content_type,
            content=_content(leaf),
            content_id=content_id[0] if content_id else None,
            inline=disposition == "inline" or (disposition is None and bool(content_id)),
        ))
    return "\n".join(bodies["text/plain"]), "\n".join(bodies["text/html"]), tuple(attachments)
