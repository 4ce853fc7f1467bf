"""Inbound email as pure functions: parse raw RFC 822, extract the newest reply, sanitise HTML
for display. No database: the Support Hub's message store and thread API call these."""

from apps.merchants.mail.parse import Attachment, EmailParseError, ParsedEmail, message_parse
from apps.merchants.mail.replies import Reply, reply_extract
from apps.merchants.mail.sanitize import cid_references, html_for_iframe, html_sanitize

__all__ = [
    "Attachment",
    "EmailParseError",
    "ParsedEmail",
    "Reply",
    "cid_references",
    "html_for_iframe",
    "html_sanitize",
    "message_parse",
    "reply_extract",
]
