"""Checking a file someone sends before it is stored: the type is decided by sniffing the bytes
against an allow-list (never by the name), and the name shown is made safe. Pure functions."""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
import uuid
import zipfile
from dataclasses import dataclass, field
from typing import BinaryIO

# The name shown to people, without its extension; long enough for any real file name.
MAX_STEM_CHARS = 120
# [Content_Types].xml of a real Office file is a few KiB; a bigger one is not worth inflating.
MAX_OOXML_TYPES_BYTES = 1024 * 1024
READ_CHUNK = 64 * 1024

# Each allowed type: its content type and the extensions its display name may keep (first: given
# when the sender's name has another one).
ALLOWED: dict[str, tuple[str, ...]] = {
    "application/pdf": (".pdf",),
    "image/png": (".png",),
    "image/jpeg": (".jpg", ".jpeg"),
    "image/gif": (".gif",),
    "image/webp": (".webp",),
    "text/plain": (".txt", ".log", ".text"),
    "text/csv": (".csv",),
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": (".docx",),
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": (".xlsx",),
}
ALLOWED_NAMES = "PDF, PNG, JPEG, GIF, WebP, plain text or CSV (UTF-8), Word (.docx) or Excel (.xlsx)"

_MAGIC = (
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)
# The main part each allowed Office format declares; macro-enabled and template variants differ.
_OOXML_MAIN = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml":
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml":
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
_CONTENT_TYPE_ATTR = re.compile(rb'ContentType\s*=\s*["\']([^"\']+)["\']')
# What browsers sniff as markup in a text file (WHATWG MIME sniffing, "text/html" patterns, plus
# XML and SVG): such a "text" file is a web page, whatever its name says.
_MARKUP_START = re.compile(
    r"<(?:!doctype\s+html|html|head|script|iframe|h1|div|font|table|a|style|title|b|body|br|p|svg"
    r"|\?xml|!--)(?:[\s>/]|$)",
    re.IGNORECASE,
)
# Control characters text files do not hold (tab, line feed, form feed and carriage return do).
_TEXT_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f]")
# Characters Windows refuses in a file name; replaced so a downloaded file saves everywhere.
_UNSAFE_CHARS = re.compile(r'[<>:"|?*]')


class UploadRefused(ValueError):
    """The file cannot be taken; str(error) says why in words the sender can act on."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class CheckedUpload:
    safe_name: str  # what people see: no path, no control characters, extension of the real type
    content_type: str  # what the bytes are, not what the sender said
    size: int
    sha256: str
    storage_name: str  # generated: the sender's name never reaches the file system
    content: bytes = field(repr=False)


def upload_check(name: str, data: bytes | BinaryIO, *, max_bytes: int) -> CheckedUpload:
    """Check one file (bytes, or a file object such as an UploadedFile) against the allow-list.

    Raises UploadRefused (a ValueError) when it is empty, larger than `max_bytes`, or not of an
    allowed type by its content.
    """
    label = safe_filename(name or "")
    content = _read(data, max_bytes=max_bytes)
    if content is None:
        raise UploadRefused(f"{label} is larger than the limit of {_size(max_bytes)}.", code="too_large")
    if not content:
        raise UploadRefused(f"{label} is empty.", code="empty")
    content_type = sniff_content_type(content, name=name or "")
    if content_type is None:
        raise UploadRefused(f"{label} is not a file type we accept; allowed: {ALLOWED_NAMES}.",
                            code="type_not_allowed")
    safe_name = safe_filename(name or "", content_type=content_type)
    return CheckedUpload(
        safe_name=safe_name, content_type=content_type, size=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        storage_name=f"{uuid.uuid4().hex}{ALLOWED[content_type][0]}", content=content,
    )


def _read(data: bytes | BinaryIO, *, max_bytes: int) -> bytes | None:
    """The bytes, or None when there are more than `max_bytes` (a file is read at most one byte
    past the limit: enough to know it is over)."""
    if isinstance(data, bytes | bytearray | memoryview):
        content = bytes(data)
        return content if len(content) <= max_bytes else None
    size = getattr(data, "size", None)
    if isinstance(size, int) and size > max_bytes:
        return None
    if hasattr(data, "seek"):
        data.seek(0)
    chunks, total = [], 0
    while total <= max_bytes:
        chunk = data.read(min(READ_CHUNK, max_bytes + 1 - total))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks) if total <= max_bytes else None


def sniff_content_type(content: bytes, *, name: str = "") -> str | None:
    """The allowed type the bytes are, or None. `name` only tells CSV from other plain text."""
    for magic, content_type in _MAGIC:
        if content.startswith(magic):
            return content_type
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    if content.startswith(b"PK\x03\x04"):
        return _ooxml_type(content)
    if _is_plain_text(content):
        return "text/csv" if name.lower().rstrip(". ").endswith(".csv") else "text/plain"
    return None


def _ooxml_type(content: bytes) -> str | None:
    """Word or Excel when the zip is an Office document of that kind; a bare zip is refused."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            info = archive.getinfo("[Content_Types].xml")
            if info.file_size > MAX_OOXML_TYPES_BYTES:
                return None
            declared = archive.read(info)[: MAX_OOXML_TYPES_BYTES]
    except (zipfile.BadZipFile, KeyError, OSError, RuntimeError, NotImplementedError, EOFError, ValueError):
        return None
    types = {m.decode("ascii", "replace").strip().lower() for m in _CONTENT_TYPE_ATTR.findall(declared)}
    found = {_OOXML_MAIN[t] for t in types if t in _OOXML_MAIN}
    return found.pop() if len(found) == 1 else None


def _is_plain_text(content: bytes) -> bool:
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    text = text.removeprefix("\ufeff")
    if _TEXT_CONTROL.search(text):
        return False
    return _MARKUP_START.match(text.lstrip()) is None


def safe_filename(name: str, *, content_type: str | None = None) -> str:
    """The sender's file name as it may be shown and offered for download.

    Unicode-normalised (NFKC, so look-alike slashes become real ones before paths are cut), the
    last path part only, no control or format characters (a right-to-left override can make
    "fdp.exe" read "exe.pdf"), no leading dots, length-capped, and with the extension of
    `content_type` when given.
    """
    text = unicodedata.normalize("NFKC", name)
    text = re.split(r"[/\\]", text)[-1]
    text = "".join(c for c in text if unicodedata.category(c)[0] not in ("C", "Z") or c == " ")
    text = _UNSAFE_CHARS.sub("_", text)
    text = " ".join(text.split()).strip(". ")
    stem, dot, extension = text.rpartition(".")
    if not dot:
        stem, extension = text, ""
    extension = f".{extension.lower()}" if extension else ""
    if content_type is not None:
        allowed = ALLOWED.get(content_type, ("",))
        if extension not in allowed:
            stem, extension = text, allowed[0]
    stem = stem.strip(". ")[:MAX_STEM_CHARS].rstrip(". ") or "attachment"
    return f"{stem}{extension}"


def _size(limit: int) -> str:
    if limit >= 1024 * 1024 and limit % (1024 * 1024) == 0:
        return f"{limit // (1024 * 1024)} MiB"
    return f"{limit} bytes"
