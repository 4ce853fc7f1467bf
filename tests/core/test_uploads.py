"""Upload checking (apps.core.uploads): the type comes from the bytes against an allow-list, never
from the name; empty and oversized files are refused; the name shown is made safe and the
stored name is generated."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile, TemporaryUploadedFile

from apps.core.uploads import UploadRefused, safe_filename, upload_check

LIMIT = 1024 * 1024
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9"
GIF = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
WEBP = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
DOCX_MAIN = "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"
XLSX_MAIN = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"
DOCM_MAIN = "application/vnd.ms-word.document.macroEnabled.main+xml"


def office(main_type: str | None, *, part: str = "word/document.xml") -> bytes:
    """A zip laid out as an Office file whose [Content_Types].xml declares `main_type`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        if main_type is not None:
            archive.writestr("[Content_Types].xml", (
                '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
                '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
                '<Default Extension="xml" ContentType="application/xml"/>'
                f'<Override PartName="/{part}" ContentType="{main_type}"/></Types>'))
        archive.writestr(part, "<document/>")
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "content", "content_type", "shown"), [
    ("scan.pdf", PDF, "application/pdf", "scan.pdf"),
    ("photo.PNG", PNG, "image/png", "photo.png"),
    ("photo.jpeg", JPEG, "image/jpeg", "photo.jpeg"),
    ("camera", JPEG, "image/jpeg", "camera.jpg"),
    ("anim.gif", GIF, "image/gif", "anim.gif"),
    ("sticker.webp", WEBP, "image/webp", "sticker.webp"),
    ("notes.txt", "Grüße, order A-1 is late.\r\n".encode(), "text/plain", "notes.txt"),
    ("orders.csv", b"\xef\xbb\xbforder,total\nA-1,12.50\n", "text/csv", "orders.csv"),
    ("letter.docx", office(DOCX_MAIN),
     "application/vnd.openxmlformats-officedocument.wordprocessingml.document", "letter.docx"),
    ("sheet.xlsx", office(XLSX_MAIN, part="xl/workbook.xml"),
     "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "sheet.xlsx"),
    # The name says one thing, the bytes another: the bytes win, and the extension follows them.
    ("invoice.pdf", PNG, "image/png", "invoice.pdf.png"),
    ("report.docx", b"plain words\n", "text/plain", "report.docx.txt"),
])
def test_allowed_types_are_known_by_their_bytes(name, content, content_type, shown):
    checked = upload_check(name, content, max_bytes=LIMIT)
    assert (checked.content_type, checked.safe_name, checked.size) == (content_type, shown, len(content))
    assert checked.sha256 == hashlib.sha256(content).hexdigest() and checked.content == content


@pytest.mark.parametrize(("name", "content"), [
    ("invoice.pdf", b"<!DOCTYPE html><html><script>alert(1)</script></html>"),  # HTML named as a PDF
    ("x.pdf", b"  <script>fetch('/admin/')</script>"),
    ("logo.png", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>'),
    ("data.txt", b'<?xml version="1.0"?><x/>'),
    ("archive.pdf", office(None)),  # a bare zip
    ("macro.docx", office(DOCM_MAIN)),  # macro-enabled Word
    ("setup.pdf", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00"),  # a Windows executable
    ("notes.txt", b"valid start \x00 then a NUL"),
    ("notes.txt", b"\xff\xfe not UTF-8"),
    ("notes.txt", b"escape \x1b[31m sequences"),
    ("broken.docx", b"PK\x03\x04 not really a zip"),
])
def test_other_types_are_refused_whatever_their_name(name, content):
    with pytest.raises(UploadRefused) as refused:
        upload_check(name, content, max_bytes=LIMIT)
    assert refused.value.code == "type_not_allowed"
    assert "not a file type we accept" in str(refused.value) and isinstance(refused.value, ValueError)


def test_empty_files_are_refused():
    with pytest.raises(UploadRefused, match="is empty") as refused:
        upload_check("empty.pdf", b"", max_bytes=LIMIT)
    assert refused.value.code == "empty"
    with pytest.raises(UploadRefused, match="is empty"):
        upload_check("empty.pdf", SimpleUploadedFile("empty.pdf", b""), max_bytes=LIMIT)


def test_files_over_the_limit_are_refused_without_reading_them_whole():
    with pytest.raises(UploadRefused, match="larger than the limit of 1 MiB") as refused:
        upload_check("big.pdf", PDF + b"0" * LIMIT, max_bytes=LIMIT)
    assert refused.value.code == "too_large"
    assert upload_check("exact.txt", b"x" * LIMIT, max_bytes=LIMIT).size == LIMIT

    class Stream(io.BytesIO):
        """A file object with no size, counting what is read of it."""

        read_total = 0

        def read(self, size=-1):
            chunk = super().read(size)
            self.read_total += len(chunk)
            return chunk

    stream = Stream(b"x" * (3 * LIMIT))
    with pytest.raises(UploadRefused, match="larger than"):
        upload_check("big.txt", stream, max_bytes=LIMIT)
    assert stream.read_total == LIMIT + 1
    with pytest.raises(UploadRefused, match="larger than"):
        upload_check("big.pdf", SimpleUploadedFile("big.pdf", PDF + b"0" * LIMIT), max_bytes=LIMIT)


def test_uploaded_files_on_disk_are_read_from_the_start():
    upload = TemporaryUploadedFile("scan.pdf", "application/pdf", len(PDF), None)
    upload.write(PDF)
    upload.seek(5)  # a reader before us left the position anywhere
    try:
        assert upload_check(upload.name, upload, max_bytes=LIMIT).content == PDF
    finally:
        upload.close()


@pytest.mark.parametrize(("name", "shown"), [
    ("../../etc/passwd", "passwd.txt"),
    ("..\\..\\windows\\x.pdf", "x.pdf.txt"),
    ("/var/www/../.htaccess", "htaccess.txt"),
    ("...", "attachment.txt"),
    ("", "attachment.txt"),
    ("report\x00.exe", "report.exe.txt"),
    ("tab\tand\nnew\rline.txt", "tabandnewline.txt"),
    ("invoice\u202etxt.exe", "invoicetxt.exe.txt"),  # right-to-left override: "invoiceexe.txt" on screen
    ("\uff0e\uff0e\uff0fsecret.txt", "secret.txt"),  # full-width "../" is a real one once normalised
    ("e\u0301te\u0301.txt", "\u00e9t\u00e9.txt"),  # decomposed accents, composed
    ('a<b>c:"d"|e?f*.txt', "a_b_c__d__e_f_.txt"),
    ("  spaced   out  .txt  ", "spaced out.txt"),
])
def test_display_names_are_made_safe(name, shown):
    checked = upload_check(name, b"plain text\n", max_bytes=LIMIT)
    assert checked.safe_name == shown
    assert not re.search(r"[\x00-\x1f\x7f/\\]", checked.safe_name) and not checked.safe_name.startswith(".")


def test_display_names_are_capped_and_stored_names_generated():
    long_name = "a" * 400 + ".pdf"
    first = upload_check(long_name, PDF, max_bytes=LIMIT)
    assert first.safe_name == "a" * 120 + ".pdf"
    second = upload_check(long_name, PDF, max_bytes=LIMIT)
    assert re.fullmatch(r"[0-9a-f]{32}\.pdf", first.storage_name)
    assert first.storage_name != second.storage_name
    traversal = upload_check("../../etc/passwd", b"x", max_bytes=LIMIT)
    assert re.fullmatch(r"[0-9a-f]{32}\.txt", traversal.storage_name)


def test_safe_filename_without_a_type_keeps_the_extension():
    assert safe_filename("../Q3 Report.PDF") == "Q3 Report.pdf"
    assert safe_filename("..") == "attachment"
