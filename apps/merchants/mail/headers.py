"""Reading the headers of a parsed message: decoded, storable text, ids, addresses and the
date, with fallbacks wherever policy.default's structured parser is slow or fails."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.policy import EmailPolicy
from email.utils import getaddresses, parsedate_to_datetime
from functools import lru_cache

from apps.core.input import storable_text_error

# The structured header parser of policy.default slows with the square of a header's length on
# some input (40 KB of quotes in a From: takes seconds). Real headers it needs to parse are far
# shorter; longer values are cut before it sees them. Ids and addresses are read from the raw
# value instead, so a long References or To header still counts in full.
MAX_PARSED_HEADER_CHARS = 2048

_ANGLE_ID = re.compile(r"<([^<>\s]+)>")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
ESCAPED_BYTE = re.compile(r"[\udc80-\udcff]")


class BoundedPolicy(EmailPolicy):
    """policy.default, except that no header value longer than MAX_PARSED_HEADER_CHARS is parsed,
    and each distinct value is parsed once: the email package asks for a part's Content-Type
    several times while parsing, and would parse it afresh every time."""

    def header_fetch_parse(self, name, value):
        return _header_parsed(name, value[:MAX_PARSED_HEADER_CHARS])


POLICY = BoundedPolicy()


@lru_cache(maxsize=1024)
def _header_parsed(name: str, value: str):
    # Header objects are immutable str subclasses, so sharing one between messages is safe.
    return EmailPolicy.header_fetch_parse(POLICY, name, value)


def text_storable(text: str) -> str:
    """`text` as PostgreSQL can store it: NULs dropped, lone surrogates replaced by U+FFFD."""
    if storable_text_error(text) is None:
        return text
    return _SURROGATE.sub("\ufffd", text.replace("\x00", ""))


def raw_items(message: Message) -> list[tuple[str, str]]:
    """Every header (name, value) as it came, folded and undecoded."""
    try:
        return [(str(name), str(value)) for name, value in message.raw_items()]
    except Exception:
        return []


def raw_header(message: Message, name: str) -> str:
    """The first `name` header exactly as it came, unfolded; "" when absent."""
    wanted = name.lower()
    raw = next((value for key, value in raw_items(message) if key.lower() == wanted), "")
    return text_storable(raw.replace("\r", "").replace("\n", ""))


def header(message: Message, name: str) -> str:
    """The first `name` header, RFC 2047 decoded, or "" when absent."""
    wanted = name.lower()
    raw = next((value for key, value in raw_items(message) if key.lower() == wanted), None)
    if raw is None:
        return ""
    if not ESCAPED_BYTE.search(raw):  # 8-bit text would come back from the parser as U+FFFD
        try:
            value = message.get(name)
            if value is not None:
                return header_text(str(value))
        except Exception:  # the structured header parser has failed on hostile input before
            pass
    return header_text(decode_words(raw))


def unescape_8bit(value: str) -> str:
    """Raw 8-bit header bytes (RFC 6532 UTF-8, or a legacy charset) reach us as surrogate
    escapes: read them as UTF-8, else as Windows-1252."""
    if not ESCAPED_BYTE.search(value):
        return value
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # other lone surrogates too: text_storable replaces them all
        return value
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", "replace")


def header_text(value: str) -> str:
    """A header value as storable text, raw 8-bit bytes read as text."""
    return text_storable(unescape_8bit(value))


def decode_words(raw: str) -> str:
    """An unstructured header value with its RFC 2047 encoded words decoded."""
    text = unescape_8bit(raw)
    try:
        if len(text) > MAX_PARSED_HEADER_CHARS:
            raise ValueError("too long for the structured parser")
        return str(POLICY.header_factory("X-Decoded", text))
    except Exception:
        try:
            return str(make_header(decode_header(text)))
        except Exception:
            return text


def ids(value: str) -> tuple[str, ...]:
    """Message ids in header order, without <> and repeats; bare ids where a client omits <>."""
    found = _ANGLE_ID.findall(value) or [token.strip("<>,;") for token in value.split()]
    return tuple(dict.fromkeys(token for token in found if token))


def _address_pairs(message: Message, name: str) -> list[tuple[str, str]]:
    """(display name, addr-spec) of every address in every `name` header, groups flattened."""
    raws = [raw for key, raw in raw_items(message) if key.lower() == name.lower()]
    if all(len(raw) <= MAX_PARSED_HEADER_CHARS for raw in raws):
        try:
            pairs: list[tuple[str, str]] = []
            for field in message.get_all(name) or []:
                pairs += [(address.display_name, address.addr_spec) for address in field.addresses]
            return pairs
        except Exception:  # fall back to the legacy parser below
            pass
    # A long recipient list, or a value the structured parser fails on: the legacy parser reads
    # it in linear time, if less precisely.
    try:
        return [(decode_words(display), address) for display, address in getaddresses(raws)]
    except Exception:
        return []


def _clean_address(addr_spec: str) -> str:
    address = header_text(addr_spec).strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        return ""
    return address


def sender(message: Message) -> tuple[str, str]:
    """(display name, lowercased address) of the first usable From address, or ("", "")."""
    for display_name, addr_spec in _address_pairs(message, "From"):
        address = _clean_address(addr_spec)
        if address:
            return header_text(" ".join(display_name.split())), address
    return "", ""


def addresses(message: Message, name: str) -> tuple[str, ...]:
    """The lowercased addresses of every `name` header (To, Cc), each once, unusable ones left out."""
    cleaned = (_clean_address(addr_spec) for _, addr_spec in _address_pairs(message, name))
    return tuple(dict.fromkeys(address for address in cleaned if address))


def sent_at(message: Message) -> datetime | None:
    """The Date: header in UTC; None when absent, unparseable or out of range."""
    value = header(message, "Date").strip()
    if not value:
        return None
    try:
        moment = parsedate_to_datetime(value)
        if moment.tzinfo is None:  # "-0000": the time is UTC, the sender's zone unknown
            moment = moment.replace(tzinfo=UTC)
        # UTC because PostgreSQL refuses offsets of 16 hours and more, which a Date: can carry.
        return moment.astimezone(UTC)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None


def filename(part: Message) -> str:
    """The file name a part's sender gave it (Content-Disposition, else Content-Type), or ""."""
    try:
        name = part.get_filename() or ""
    except Exception:
        name = ""
    for field, param in (("content-disposition", "filename"), ("content-type", "name")):
        raw = next((value for key, value in raw_items(part) if key.lower() == field), "")
        if ESCAPED_BYTE.search(raw):  # a raw 8-bit name, which get_filename() turns into U+FFFD
            try:
                value = unescape_8bit(raw)[:MAX_PARSED_HEADER_CHARS]
                name = POLICY.header_factory(field, value).params.get(param) or name
            except Exception:
                pass
            break
    if "=?" in name:  # RFC 2047 inside a quoted parameter: not standard, but Outlook does it
        name = decode_words(name)
    return header_text(name)
