"""message_parse: headers, bodies, attachments, auto-reply and bounce flags, and that no input
makes it raise anything but EmailParseError or return text PostgreSQL cannot store."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.header import Header

import pytest

from apps.core.input import storable_text_error
from apps.merchants.mail import EmailParseError, ParsedEmail, message_parse
from apps.merchants.mail.parse import MAX_MIME_DEPTH
from tests.utils.corpus import CORPUS

EML_DIR = CORPUS / "email-replies" / "eml"


def mail(headers: str, body: str = "Hello", *, crlf: bool = True) -> bytes:
    text = headers.strip("\n") + "\n\n" + body
    return (text.replace("\n", "\r\n") if crlf else text).encode("utf-8")


BASIC = """From: =?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <Juergen.Mueller@Example.DE>
To: Support <SUPPORT@casehub.example>, second@example.com
Cc: undisclosed-recipients:;, "Ops, Team" <ops@example.com>
Subject: =?utf-8?b?UmU6IEJlc3RlbGx1bmcgw7xiZXI=?=
  =?utf-8?q?_Nr=2E_42?=	 (urgent)
Date: Mon, 03 Feb 2020 10:15:00 +0100
Message-ID:   <abc.123@mail.example.com>\t
In-Reply-To: <first@example.com>
References: <root@example.com>
 <first@example.com>	<root@example.com> bare-id@example.com
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8"""


def storable(parsed: ParsedEmail) -> bool:
    texts = [parsed.subject, parsed.from_address, parsed.from_name, parsed.text, parsed.html,
             parsed.message_id or "", *parsed.to, *parsed.cc, *parsed.references, *parsed.in_reply_to,
             *(a.filename for a in parsed.attachments), *(a.content_id or "" for a in parsed.attachments)]
    return all(storable_text_error(text) is None for text in texts)


def test_headers_are_decoded_and_normalised():
    parsed = message_parse(mail(BASIC, "Grüße\n"))
    assert parsed.message_id == "abc.123@mail.example.com"
    assert parsed.in_reply_to == ("first@example.com",)
    assert parsed.references == ("root@example.com", "first@example.com")
    assert parsed.subject == "Re: Bestellung über Nr. 42 (urgent)"
    assert parsed.from_address == "juergen.mueller@example.de"
    assert parsed.from_name == "Jürgen Müller"
    assert parsed.to == ("support@casehub.example", "second@example.com")
    assert parsed.cc == ("ops@example.com",)
    assert parsed.sent_at == datetime(2020, 2, 3, 9, 15, tzinfo=UTC)
    assert parsed.sent_at.utcoffset() == timedelta(0)
    assert parsed.text == "Grüße\n"
    assert parsed.html == ""
    assert parsed.attachments == ()
    assert not parsed.is_auto_reply and not parsed.is_bounce


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_raw_8bit_headers_are_read_as_utf8_or_windows_1252(encoding):
    """RFC 6532 allows raw UTF-8 in headers; older mailers send their local charset unencoded."""
    raw = ("From: Jürgen Müller <j@example.de>\r\nSubject: Grüße aus\r\n Köln =?utf-8?q?am_Rhein?=\r\n"
           "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: application/pdf\r\n"
           'Content-Disposition: attachment; filename="März.pdf"\r\n\r\nx\r\n--b--\r\n').encode(encoding)
    parsed = message_parse(raw)
    assert (parsed.from_name, parsed.subject) == ("Jürgen Müller", "Grüße aus Köln am Rhein")
    assert parsed.attachments[0].filename == "März.pdf"


def test_ids_without_angle_brackets_are_taken_as_they_are():
    parsed = message_parse(mail("From: a@example.com\nMessage-ID: bare@example.com\n"
                                "In-Reply-To: one@x  two@x\nReferences: <r1@x>,<r2@x>"))
    assert parsed.message_id == "bare@example.com"
    assert parsed.in_reply_to == ("one@x", "two@x")
    assert parsed.references == ("r1@x", "r2@x")


@pytest.mark.parametrize("header", ["", "Message-ID:   \n", "Message-ID: <>\n"])
def test_absent_or_blank_message_id_is_none(header):
    parsed = message_parse(mail(f"From: a@example.com\n{header}Subject: x"))
    assert parsed.message_id is None


@pytest.mark.parametrize(("value", "expected"), [
    ("Tue, 3 Apr 2012 16:23:59 +0400", datetime(2012, 4, 3, 12, 23, 59, tzinfo=UTC)),
    ("Tue, 3 Apr 2012 16:23:59 -0000", datetime(2012, 4, 3, 16, 23, 59, tzinfo=UTC)),
    ("3 Apr 2012 16:23 GMT", datetime(2012, 4, 3, 16, 23, tzinfo=UTC)),
    ("Tue, 3 Apr 2012 16:23:59 +2300", datetime(2012, 4, 2, 17, 23, 59, tzinfo=UTC)),
    ("yesterday", None), ("", None), ("Tue, 31 Feb 2012 10:00:00 +0000", None),
    ("Fri, 31 Dec 9999 23:30:00 -0100", None),  # past year 9999 in UTC
])
def test_sent_at_is_aware_utc_or_none(value, expected):
    parsed = message_parse(mail(f"From: a@example.com\nDate: {value}"))
    assert parsed.sent_at == expected
    if expected is not None:
        assert parsed.sent_at.tzinfo is not None


@pytest.mark.parametrize("value", ["", "not an address", "<@>", "Someone <>", "a b@example.com"])
def test_unparseable_sender_gives_empty_address(value):
    parsed = message_parse(mail(f"From: {value}\nSubject: x"))
    assert parsed.from_address == ""


def test_alternative_bodies_and_attachments():
    raw = mail("""From: a@example.com
Subject: files
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"
""", """--outer
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Gr=FC=DFe, see the picture
--alt
Content-Type: multipart/related; boundary="rel"

--rel
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PHA+R3LDvMOfZSA8aW1nIHNyYz0iY2lkOmxvZ28xQGV4Ij48L3A+
--rel
Content-Type: image/png
Content-ID: <logo1@ex>
Content-Transfer-Encoding: base64

iVBORw0KGgo=
--rel--
--alt--
--outer
Content-Type: application/pdf; name="=?utf-8?q?Rechnung_M=C3=A4rz.pdf?="
Content-Disposition: attachment; filename*=utf-8''Rechnung%20M%C3%A4rz.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQ=
--outer
Content-Type: message/rfc822
Content-Disposition: attachment

From: old@example.com
Subject: forwarded

old body
--outer--
""")
    parsed = message_parse(raw)
    assert parsed.text == "Grüße, see the picture"
    assert parsed.html == '<p>Grüße <img src="cid:logo1@ex"></p>'
    image, pdf, forwarded = parsed.attachments
    assert (image.content_type, image.content, image.content_id, image.inline, image.filename) == (
        "image/png", b"\x89PNG\r\n\x1a\n", "logo1@ex", True, "")
    assert (pdf.filename, pdf.content_type, pdf.content, pdf.inline) == (
        "Rechnung März.pdf", "application/pdf", b"%PDF-1.4", False)
    assert forwarded.content_type == "message/rfc822"
    assert b"Subject: forwarded" in forwarded.content and b"old body" in forwarded.content


def test_outlook_encoded_word_file_names_are_decoded():
    raw = mail("""From: a@example.com
Content-Type: multipart/mixed; boundary="b"
""", """--b
Content-Type: text/plain

body
--b
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="=?iso-8859-1?q?=C4rger.txt?="

x
--b--
""")
    assert message_parse(raw).attachments[0].filename == "Ärger.txt"


def test_body_split_around_an_inline_image_is_joined():
    """Apple Mail writes text, image, text in one multipart/mixed: all text is the body."""
    raw = mail("""From: a@example.com
Content-Type: multipart/mixed; boundary="b"
""", """--b
Content-Type: text/plain

before
--b
Content-Type: image/jpeg
Content-Disposition: inline; filename="photo.jpg"

jpeg
--b
Content-Type: text/plain

after
--b
Content-Type: text/plain
Content-Disposition: attachment; filename="notes.txt"

notes
--b--
""")
    parsed = message_parse(raw)
    assert parsed.text == "before\nafter"
    assert [(a.filename, a.inline) for a in parsed.attachments] == [("photo.jpg", True), ("notes.txt", False)]


@pytest.mark.parametrize(("charset", "payload", "expected"), [
    ("koi8-r", "Привет".encode("koi8-r"), "Привет"),
    ("x-no-such-charset", "Grüße".encode(), "Grüße"),  # unknown: read as UTF-8
    ("x-no-such-charset", b"Gr\xfc\xdfe", "Grüße"),  # ...or as Windows-1252
    ("utf-8", b"caf\xe9 ok", "caf\ufffd ok"),  # wrong charset: replacement, not an error
    ("rot13", b"uryyb", "uryyb"),  # a codec Python has, but no text encoding: read as UTF-8
    ("unicode_escape", b"a\\ud800b\\x00c", "a\ufffdbc"),  # decodes to a lone surrogate and NUL
    (None, b"Gr\xfc\xdfe", "Grüße"),
])
def test_bodies_decode_whatever_the_charset(charset, payload, expected):
    content_type = f"text/plain; charset={charset}" if charset else "text/plain"
    raw = b"From: a@example.com\r\nContent-Type: " + content_type.encode() + b"\r\n\r\n" + payload
    parsed = message_parse(raw)
    assert parsed.text == expected
    assert storable(parsed)


def test_nul_and_surrogates_never_come_back():
    raw = (b"From: =?utf-8?q?A=00B?= <a@example.com>\r\nSubject: x\x00y =?unicode_escape?q?\\ud800?=\r\n"
           b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>a\x00b</p>")
    parsed = message_parse(raw)
    assert storable(parsed)
    assert parsed.html == "<p>ab</p>"
    assert "\x00" not in parsed.subject


@pytest.mark.parametrize("headers", [
    "Auto-Submitted: auto-replied",
    "Auto-Submitted: auto-generated; owner-email=x@example.com",
    "X-Autoreply: yes", "X-Autorespond: vacation", "Precedence: bulk", "Precedence: auto_reply",
    "Precedence: junk", "Precedence: list",
    "Subject: Automatic reply: your order", "Subject: Out of Office: back Monday",
    "Subject: Abwesenheitsnotiz: Ihre Anfrage", "Subject: Réponse automatique : commande",
    "Subject: Automatische Antwort: Bestellung", "Subject: Respuesta automática: pedido",
    "Subject: " + Header("自动回复: 订单", "utf-8").encode(),
])
def test_auto_replies_are_recognised(headers):
    assert message_parse(mail(f"From: a@example.com\n{headers}")).is_auto_reply


@pytest.mark.parametrize("headers", [
    "Auto-Submitted: no", "Subject: Re: Out of office question", "Subject: My automatic reply is broken?",
    "Precedence: first-class", "X-Autoreply: no",
])
def test_human_mail_is_not_an_auto_reply(headers):
    assert not message_parse(mail(f"From: a@example.com\n{headers}")).is_auto_reply


DSN = """--b
Content-Type: text/plain

Delivery to the following recipient failed permanently: x@example.com
--b
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; x@example.com
Action: failed
Status: 5.1.1
--b
Content-Type: message/rfc822

From: us@casehub.example
Subject: your case

original
--b--
"""


@pytest.mark.parametrize(("headers", "bounce"), [
    ("From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\n"
     "Content-Type: multipart/report; report-type=delivery-status; boundary=b", True),
    ("From: someone@example.com\nContent-Type: multipart/report; report-type=\"delivery-status\"; boundary=b",
     True),
    ("From: postmaster@example.com\nContent-Type: multipart/mixed; boundary=b", True),
    ("From: robot@example.com\nReturn-Path: <>\nContent-Type: multipart/mixed; boundary=b", True),
    ("From: robot@example.com\nReturn-Path: <robot@example.com>\nContent-Type: multipart/mixed; boundary=b",
     False),
    ("From: reader@example.com\n"
     "Content-Type: multipart/report; report-type=disposition-notification; boundary=b", False),
])
def test_bounces_are_recognised(headers, bounce):
    parsed = message_parse(mail(headers, DSN))
    assert parsed.is_bounce is bounce
    # The status report is read, not shown: it is neither body nor attachment.
    assert "message/delivery-status" not in [a.content_type for a in parsed.attachments]


def test_empty_return_path_without_a_status_report_is_not_a_bounce():
    assert not message_parse(mail("From: a@example.com\nReturn-Path: <>")).is_bounce


@pytest.mark.parametrize("raw", [
    b"", b"\r\n\r\n   ", b"\xef\xbb\xbf", b"hello world, no headers here", b"\x00\x01\x02\xff" * 100,
    b"foo: bar\n\nnot a mail header",
])
def test_input_that_is_no_message_is_refused_with_a_reason(raw):
    with pytest.raises(EmailParseError) as error:
        message_parse(raw)
    assert str(error.value)
    assert "message" in str(error.value).lower()


@pytest.mark.parametrize("value", ["From: a@example.com\n\nhi", None, 42])
def test_only_bytes_are_taken(value):
    with pytest.raises(EmailParseError, match="bytes"):
        message_parse(value)


def test_leading_bom_and_blank_lines_are_tolerated():
    parsed = message_parse(b"\xef\xbb\xbf\r\n\r\nFrom: a@example.com\r\nSubject: hi\r\n\r\nbody")
    assert (parsed.subject, parsed.text) == ("hi", "body")


def test_headers_only_message_has_empty_bodies():
    parsed = message_parse(b"Subject: nothing else")
    assert (parsed.subject, parsed.text, parsed.html, parsed.from_address) == ("nothing else", "", "", "")


def nested(depth: int) -> bytes:
    parts = [b"From: a@example.com\r\nSubject: deep\r\nContent-Type: multipart/mixed; boundary=b0\r\n\r\n"]
    part = b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n"
    parts += [part % (level - 1, level) for level in range(1, depth)]
    parts.append(b"--b%d\r\nContent-Type: text/plain\r\n\r\ndeep inside\r\n" % (depth - 1))
    return b"".join(parts)


def test_nesting_within_the_cap_is_read():
    assert message_parse(nested(MAX_MIME_DEPTH)).text.startswith("deep inside")


@pytest.mark.parametrize("depth", [MAX_MIME_DEPTH + 5, 400, 5000])
def test_absurd_nesting_is_capped_not_followed(depth):
    parsed = message_parse(nested(depth))
    assert parsed.subject == "deep"
    assert parsed.text == ""


def test_huge_headers_parse_in_linear_time_and_still_count_in_full():
    """The structured header parser is quadratic on some values: it never sees long ones."""
    import time

    recipients = ", ".join(f"User {n} <user{n}@example.com>" for n in range(3000))
    references = " ".join(f"<id{n}@example.com>" for n in range(3000))
    part = ('--b\r\nContent-Type: image/png; n={n}; ' + "a=b; " * 5000 + '\r\nContent-ID: "' + '"a' * 5000
            + '\r\nContent-Disposition: inline; filename="{n}' + "(" * 5000 + '"\r\n\r\nx\r\n')
    quotes, words = '"a' * 20000, "=?utf-8?q?a?= " * 20000
    raw = (f"From: {quotes} <a@example.com>\r\nTo: {recipients}\r\nReferences: {references}\r\n"
           f"Subject: {words}\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           + "".join(part.replace("{n}", str(n)) for n in range(20)) + "--b--\r\n").encode()
    started = time.perf_counter()
    parsed = message_parse(raw)
    assert time.perf_counter() - started < 10  # quadratic parsing of these takes minutes
    assert len(parsed.to) == 3000 and parsed.to[-1] == "user2999@example.com"
    assert len(parsed.references) == 3000 and parsed.references[0] == "id0@example.com"
    assert len(parsed.attachments) == 20
    assert storable(parsed)


def test_multipart_without_its_boundary_keeps_its_text():
    parsed = message_parse(mail("From: a@example.com\nContent-Type: multipart/mixed", "just text"))
    assert parsed.text == "just text"


@pytest.mark.parametrize("path", sorted(EML_DIR.glob("*.eml")), ids=lambda p: p.name)
def test_corpus_messages_parse(path):
    parsed = message_parse(path.read_bytes())
    assert parsed.text.strip() and parsed.from_address and parsed.subject
    assert storable(parsed)


def test_corpus_gmail_message_fields():
    parsed = message_parse((EML_DIR / "gmail.eml").read_bytes())
    assert parsed.message_id == "CAKsfaBW4hj0Gek6TwbR3erng4P1y0CZzJ0d=pXtCNnYnbe7PLg@mail.gmail.com"
    assert (parsed.from_name, parsed.from_address, parsed.to) == ("Megan One", "xxx@gmail.com",
                                                                   ("bob@example.com",))
    assert parsed.sent_at == datetime(2012, 4, 2, 16, 21, 52, tzinfo=UTC)
    assert parsed.html.startswith("Hello<br>")


def mutations(seed: int, count: int):
    """Damaged versions of the corpus messages: flipped bytes, truncation, junk and hostile
    header fragments spliced in, and plain random bytes."""
    rng = random.Random(seed)
    samples = [path.read_bytes() for path in sorted(EML_DIR.glob("*.eml"))]
    splices = [b"=?utf-8?b?////?=", b"\x00", b"\xed\xa0\x80", b'charset="x-unknown"', b'boundary=""',
               b"Content-Type: multipart/mixed; boundary=x\n\n--x\n", b"=?unicode_escape?q?\\ud800?=",
               b"\r", b"(" * 50, b"<<<<@@@@>>>>", b"Date: 99 Foo 99999 99:99 +9999\n", b"\n\n"]
    for _ in range(count):
        data = bytearray(rng.choice(samples))
        kind = rng.random()
        if kind < 0.3:
            for _ in range(rng.randint(1, 30)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        elif kind < 0.5:
            data = data[:rng.randrange(len(data))]
        elif kind < 0.8:
            at = rng.randrange(len(data))
            data[at:at] = rng.choice(splices)
        else:
            data = bytearray(rng.randbytes(rng.randint(0, 2000)))
        yield bytes(data)


def test_damaged_input_raises_only_email_parse_error_and_stays_storable():
    parsed_count = 0
    for raw in mutations(seed=11, count=600):
        try:
            parsed = message_parse(raw)
        except EmailParseError as error:
            assert str(error)
            continue
        parsed_count += 1
        assert storable(parsed)
    assert parsed_count > 300  # most damage leaves a readable message, and it is read
