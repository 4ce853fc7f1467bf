"""Inbound email end to end: raw mail posted to /api/v1/email/inbound/ as a provider's webhook does,
stored once on the case it answers (headers, then subject token) or on a new case; the newest
reply extracted over real mail clients' messages; auto-replies, bounces, attachments, and the
endpoint's refusals (secret, size, unreadable mail)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.cases import services
from apps.cases.models import Attachment, Case, CaseEvent, Channel, Message, Source, Status
from tests.factories.accounts import MerchantUserFactory
from tests.factories.cases import QueueFactory, mail_bytes, make_case
from tests.utils.corpus import CORPUS

pytestmark = pytest.mark.django_db

URL = "/api/v1/email/inbound/"
SECRET = "inbound-test-secret"

EML = CORPUS / "email-replies" / "eml"
TEXTS = CORPUS / "email-replies-text"
PDF = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n"


@pytest.fixture(autouse=True)
def inbound(settings):
    settings.CASEHUB_INBOUND_EMAIL_SECRET = SECRET
    settings.CASEHUB_INBOUND_QUEUE = "email"
    return QueueFactory(slug="email")


def post(client, raw: bytes, *, content_type: str = "message/rfc822", secret: str | None = SECRET, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret is not None else {}
    return client.generic("POST", URL, raw, content_type=content_type, **headers, **extra)


def stored(response) -> Message:
    assert response.status_code == 201, response.content
    return Message.objects.select_related("case").get(pk=response.json()["message"])


def collapsed(text: str) -> str:
    return " ".join(text.split())


# The newest reply of real mail, over the whole corpora ----------------------------------------

EML_EXPECTED = json.loads((CORPUS / "email-replies" / "expected.json").read_text())["eml"]


def test_every_eml_of_the_corpus_has_an_expectation():
    assert sorted(p.name for p in EML.glob("*.eml")) == sorted(EML_EXPECTED)


@pytest.mark.parametrize("name", sorted(EML_EXPECTED))
def test_real_client_mail_shows_its_newest_reply(client, name):
    message = stored(post(client, (EML / name).read_bytes()))
    assert collapsed(message.latest_reply_text) == collapsed(EML_EXPECTED[name])
    assert message.has_quoted_history
    assert message.case.source == Source.EMAIL and message.case.channel == Channel.EMAIL


def _text_fixtures() -> list[tuple[str, str, object]]:
    fixtures = []
    for folder in sorted(p for p in TEXTS.iterdir() if p.is_dir()):
        expected = json.loads((folder / "expected.json").read_text())
        fixtures += [(folder.name, name, expectation) for name, expectation in sorted(expected.items())]
    return fixtures


def normalised(text: str) -> str:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "\n".join(line.rstrip() for line in lines).strip()


HISTORY_MARKERS = re.compile(r"^\s*>|wrote:|^\s*(from|sent|to|subject):|original message", re.IGNORECASE)


def same_up_to_a_signature(reply: str, expected: str) -> bool:
    """Equal, or one of them has a short trailer more: a signature, which the README lets a reply
    keep or drop, or a mailing list's footer (kept by our extractor below a removed quote); never
    quoted history."""
    if reply == expected:
        return True
    longer, shorter = (reply, expected) if len(reply) > len(expected) else (expected, reply)
    rest = [line for line in longer[len(shorter):].split("\n") if line.strip()]
    return (longer.startswith(shorter) and len(rest) <= 6
            and not any(HISTORY_MARKERS.search(line) for line in rest))


def wrapped(body: bytes, number: int) -> bytes:
    """A plain-text body as the minimal message a client would send (see the corpus README)."""
    head = (f"From: Sender {number} <sender{number}@example.org>\r\nTo: support@casehub.localhost\r\n"
            f"Subject: Question {number}\r\nMessage-ID: <text-fixture-{number}@example.org>\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n")
    return head.encode() + body


TEXT_FIXTURES = _text_fixtures()


def test_the_text_corpora_are_all_covered():
    files = {(p.parent.name, p.name) for p in TEXTS.glob("*/*.txt")}
    assert files == {(folder, name) for folder, name, _ in TEXT_FIXTURES}
    assert len(TEXT_FIXTURES) == 41


@pytest.mark.parametrize(("folder", "name", "expectation"), TEXT_FIXTURES,
                         ids=[f"{folder[:6]}-{name}" for folder, name, _ in TEXT_FIXTURES])
def test_plain_text_replies_show_their_newest_reply(client, folder, name, expectation):
    number = TEXT_FIXTURES.index((folder, name, expectation))
    reply = normalised(stored(post(client, wrapped((TEXTS / folder / name).read_bytes(), number)))
                       .latest_reply_text)
    if isinstance(expectation, str):
        assert same_up_to_a_signature(reply, normalised(expectation)), reply
        return
    # Partial expectations; signatures may be kept or dropped (README), and time is not asserted.
    for needle in [expectation.get("contains"), *expectation.get("contains_also", [])]:
        if needle:
            assert needle in reply
    for gone in expectation.get("not_contains", []):
        assert gone not in reply


# Threading ---------------------------------------------------------------------------------------


def test_a_new_mail_opens_a_case_for_the_merchant_of_its_sender(client, inbound):
    member = MerchantUserFactory(user__email="Owner@Shop.example")
    response = post(client, mail_bytes(sender="Shop Owner <owner@shop.example>", subject="Refund for A-7",
                                       message_id="first@shop.example"))
    body = response.json()
    assert response.status_code == 201 and body["status"] == "created" and body["created_case"] is True
    case = Case.objects.get(pk=body["case"])
    assert (case.queue, case.subject) == (inbound, "Refund for A-7")
    assert case.merchant_ref == member.merchant.external_id
    assert (case.source, case.channel) == (Source.EMAIL, Channel.EMAIL)
    message = Message.objects.get(case=case)
    assert (message.message_id, message.sender_address, message.sender_name) == (
        "first@shop.example", "owner@shop.example", "Shop Owner")
    event = CaseEvent.objects.get(case=case, kind="message")
    assert event.data == {"message": message.pk, "direction": "inbound", "source": "email",
                          "preview": "Hello", "attachments": 0}
    assert list(CaseEvent.objects.filter(case=case).values_list("kind", flat=True)) == ["created", "message"]


def test_a_sender_who_is_no_merchant_user_gets_a_case_without_merchant(client):
    body = post(client, mail_bytes(sender="stranger@example.net")).json()
    assert Case.objects.get(pk=body["case"]).merchant_ref == ""


def test_replies_thread_by_in_reply_to_then_by_references(client):
    first = stored(post(client, mail_bytes(message_id="a@example.org")))
    by_reply = stored(post(client, mail_bytes(message_id="b@example.org", in_reply_to="a@example.org")))
    # Only the References chain names a stored message (its In-Reply-To is unknown here).
    by_refs = stored(post(client, mail_bytes(message_id="c@example.org", in_reply_to="unknown@example.org",
                                             references=["a@example.org", "b@example.org", "x@example.org"])))
    assert by_reply.case_id == by_refs.case_id == first.case_id
    assert (by_reply.in_reply_to, by_refs.references) == (
        "a@example.org", ["a@example.org", "b@example.org", "x@example.org"])
    assert Case.objects.count() == 1


def test_a_mail_without_threading_headers_finds_its_case_by_the_subject_token(client):
    case = make_case(queue=QueueFactory(slug="general"), subject="Damaged parcel")
    message = stored(post(client, mail_bytes(subject=f"RE: Damaged parcel {services.case_token(case)}")))
    assert message.case_id == case.pk and Case.objects.count() == 1
    # A token naming no case opens a new one instead (it cannot be guessed into another's case).
    other = stored(post(client, mail_bytes(subject="Re: [case:00000000-0000-4000-8000-000000000000]")))
    assert other.case_id != case.pk


def test_the_same_message_id_is_stored_once(client):
    raw = mail_bytes(message_id="twice@example.org")
    first = post(client, raw)
    again = post(client, raw)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["status"] == "duplicate" and again.json()["message"] == first.json()["message"]
    assert Message.objects.filter(message_id="twice@example.org").count() == 1
    assert CaseEvent.objects.filter(kind="message").count() == 1


def test_a_mail_without_message_id_is_recognised_by_its_bytes(client):
    raw = re.sub(rb"Message-ID: <[^>]+>\r?\n", b"", mail_bytes(), flags=re.IGNORECASE)
    assert b"Message-ID" not in raw
    assert post(client, raw).status_code == 201
    assert post(client, raw).json()["status"] == "duplicate"
    assert Message.objects.count() == 1


def test_a_reply_reopens_a_resolved_case_where_the_queue_allows(client):
    first = stored(post(client, mail_bytes(message_id="open@example.org")))
    services.case_transition(case=first.case, to_status=Status.RESOLVED)
    stored(post(client, mail_bytes(in_reply_to="open@example.org")))
    case = Case.objects.get(pk=first.case_id)
    assert case.status == Status.REOPENED and case.resolved_at is None
    kinds = list(CaseEvent.objects.filter(case=case).values_list("kind", flat=True))
    assert kinds[-2:] == ["status_changed", "message"]


def test_a_closed_case_the_queue_does_not_reopen_stays_closed(client):
    first = stored(post(client, mail_bytes(message_id="closed@example.org")))
    services.case_transition(case=first.case, to_status=Status.CLOSED)
    stored(post(client, mail_bytes(in_reply_to="closed@example.org")))
    assert Case.objects.get(pk=first.case_id).status == Status.CLOSED


# Auto-replies and bounces --------------------------------------------------------------------------

def out_of_office(**kwargs) -> bytes:
    return mail_bytes(subject="Automatic reply: Where is my order?",
                      text="I am out of the office until Monday.",
                      headers={"Auto-Submitted": "auto-replied", "X-Autoreply": "yes"}, **kwargs)


def bounce(original_id: str) -> bytes:
    """A delivery status notification as Postfix writes it (RFC 3464)."""
    return (
        "From: MAILER-DAEMON@mx.example.org (Mail Delivery System)\r\n"
        "To: support@casehub.localhost\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <bounce-1@mx.example.org>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
        "This is the mail system at host mx.example.org.\r\n\r\n"
        "I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n"
        "<ann@example.org>: host mail.example.org said: 550 5.1.1 User unknown\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.org\r\n\r\n"
        "Final-Recipient: rfc822; ann@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Message-ID: <{original_id}>\r\nSubject: Re: Where is my order?\r\n\r\n"
        "--B--\r\n"
    ).encode()


def test_auto_replies_and_bounces_are_stored_flagged_and_never_reopen(client):
    first = stored(post(client, mail_bytes(message_id="order@example.org")))
    services.case_transition(case=first.case, to_status=Status.RESOLVED)
    auto = stored(post(client, out_of_office(in_reply_to="order@example.org")))
    bounced = stored(post(client, bounce("order@example.org").replace(
        b"Subject: Undelivered", b"In-Reply-To: <order@example.org>\r\nSubject: Undelivered")))
    assert (auto.is_auto_reply, auto.merchant_visible) == (True, False)
    assert (bounced.is_bounce, bounced.merchant_visible) == (True, False)
    assert auto.case_id == bounced.case_id == first.case_id
    assert Case.objects.get(pk=first.case_id).status == Status.RESOLVED
    flags = [e.data for e in CaseEvent.objects.filter(case_id=first.case_id, kind="message").order_by("id")]
    assert flags[1]["is_auto_reply"] is True and flags[2]["is_bounce"] is True


def test_auto_replies_and_bounces_never_open_a_case(client):
    for raw in (out_of_office(), bounce("never-stored@example.org")):
        response = post(client, raw)
        assert response.status_code == 200
        assert response.json()["status"] == "ignored" and response.json()["case"] is None
    assert Case.objects.count() == 0 and Message.objects.count() == 0


# Attachments ---------------------------------------------------------------------------------------


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("invoice.exe", b"MZ\x90\x00")
    return buffer.getvalue()


def test_allowed_attachments_are_stored_and_refused_ones_dropped_with_a_note(client):
    raw = mail_bytes(attachments=[
        ("receipt.pdf", "application/pdf", PDF),
        ("../../etc/passwd.csv", "text/csv", b"order,total\nA-1,12.50\n"),
        ("invoice.pdf", "application/pdf", b"<html><script>alert(1)</script></html>"),
        ("invoice.zip", "application/zip", zip_bytes()),
        ("empty.png", "image/png", b""),
    ])
    response = post(client, raw)
    message = stored(response)
    files = list(Attachment.objects.filter(message=message).order_by("id"))
    assert [(f.filename, f.content_type, f.size) for f in files] == [
        ("receipt.pdf", "application/pdf", len(PDF)), ("passwd.csv", "text/csv", 22)]
    assert files[0].sha256 == hashlib.sha256(PDF).hexdigest() and files[0].case_id == message.case_id
    with files[0].file.open("rb") as stored_file:
        assert stored_file.read() == PDF
    assert "passwd" not in files[1].file.name and files[1].file.name.startswith("attachments/")
    dropped = {d["filename"]: d["reason"] for d in message.dropped_attachments}
    assert set(dropped) == {"invoice.pdf", "invoice.zip", "empty.png"}
    assert "not a file type we accept" in dropped["invoice.pdf"] and "empty" in dropped["empty.png"]
    assert response.json()["dropped_attachments"] == message.dropped_attachments
    assert CaseEvent.objects.get(kind="message").data["attachments"] == 2


def test_more_files_than_allowed_keep_the_first_ones(client, settings):
    settings.CASEHUB_ATTACHMENT_MAX_COUNT = 2
    files = [(f"{n}.pdf", "application/pdf", PDF) for n in range(3)]
    message = stored(post(client, mail_bytes(attachments=files)))
    assert list(message.attachments.values_list("filename", flat=True)) == ["0.pdf", "1.pdf"]
    assert message.dropped_attachments == [
        {"filename": "2.pdf", "reason": "2.pdf is one file too many: at most 2 per mail."}]


# The endpoint's edges -------------------------------------------------------------------------------


def test_the_shared_secret_is_required(client, settings):
    raw = mail_bytes()
    missing = post(client, raw, secret=None)
    assert missing.status_code == 401 and missing["WWW-Authenticate"] == 'Bearer realm="inbound-email"'
    assert post(client, raw, secret="wrong").status_code == 401
    assert post(client, raw, secret=SECRET + "x").status_code == 401
    client.force_login(MerchantUserFactory().user)  # a signed-in person has no secret either
    assert post(client, raw, secret=None).status_code == 401
    settings.CASEHUB_INBOUND_EMAIL_SECRET = ""
    assert post(client, raw, secret="").status_code == 403
    assert post(client, raw, secret="anything").status_code == 403
    assert Message.objects.count() == 0


def test_oversized_mail_is_refused_with_413(client, settings):
    settings.CASEHUB_INBOUND_EMAIL_MAX_BYTES = 2000
    response = post(client, mail_bytes(text="x" * 3000))
    assert response.status_code == 413
    assert response.json()["code"] == "too_large" and "2000" in response.json()["detail"]
    assert Message.objects.count() == 0


@pytest.mark.parametrize("raw", [b"", b"\r\n\r\n", b"just some words, no headers at all", b"\x00\x01\x02"])
def test_unreadable_mail_is_a_400_with_a_field_error(client, raw):
    response = post(client, raw)
    assert response.status_code == 400
    assert response.json()["errors"]["email"]


def test_providers_may_post_octet_stream_or_a_form_field(client):
    octet = post(client, mail_bytes(message_id="octet@example.org"), content_type="application/octet-stream")
    assert octet.status_code == 201
    form = client.post(URL, {"email": io.BytesIO(mail_bytes(message_id="form@example.org"))},
                       HTTP_AUTHORIZATION=f"Bearer {SECRET}")
    assert form.status_code == 201
    text_field = client.post(URL, {"email": mail_bytes(message_id="field@example.org").decode()},
                             HTTP_AUTHORIZATION=f"Bearer {SECRET}")
    assert text_field.status_code == 201
    assert set(Message.objects.values_list("message_id", flat=True)) == {
        "octet@example.org", "form@example.org", "field@example.org"}
    json_body = client.post(URL, {"email": "x"}, content_type="application/json",
                            HTTP_AUTHORIZATION=f"Bearer {SECRET}")
    assert json_body.status_code == 415


def test_an_idempotency_key_replays_the_first_answer(client):
    raw = mail_bytes(message_id="keyed@example.org")
    first = post(client, raw, HTTP_IDEMPOTENCY_KEY="k-1")
    again = post(client, raw, HTTP_IDEMPOTENCY_KEY="k-1")
    assert first.status_code == 201 and again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()


def test_no_queue_for_new_mail_is_a_clear_409(client, settings):
    settings.CASEHUB_INBOUND_QUEUE = "no-such-queue"
    response = post(client, mail_bytes())
    assert response.status_code == 409
    assert "no-such-queue" in response.json()["detail"] and response.json()["errors"]["queue"]
    assert Message.objects.count() == 0


MAIL_PIECES = [b"From: a@example.org\r\n", b"Subject: =?utf-8?B?w6k=?=\r\n", b"Message-ID: <x@y>\r\n",
               b"In-Reply-To: <x@y>\r\n", b"Content-Type: multipart/mixed; boundary=b\r\n", b"--b\r\n",
               b"Content-Disposition: attachment; filename=../../x.pdf\r\n", b"\r\n", b"%PDF-1.4\r\n",
               b"Content-Transfer-Encoding: base64\r\n", b"=?x?Q?\x00?=", b"\xff\xfe", b"--b--\r\n"]


def _cut_corpus_mail():
    """A corpus mail cut short anywhere (a provider's truncated delivery)."""
    return st.sampled_from(sorted(EML.glob("*.eml"))).map(Path.read_bytes).flatmap(
        lambda raw: st.integers(0, len(raw)).map(lambda cut: raw[:cut]))


@hypothesis_settings(max_examples=80, deadline=None, database=None, derandomize=True,
                     suppress_health_check=list(HealthCheck))
@given(raw=st.one_of(st.binary(max_size=2000),
                     st.lists(st.sampled_from(MAIL_PIECES), max_size=30).map(b"".join), _cut_corpus_mail()))
def test_no_mail_whatever_its_bytes_is_a_server_error(client, raw):
    with transaction.atomic():
        response = post(client, raw)
        transaction.set_rollback(True)
    assert response.status_code in (200, 201, 400), (response.status_code, response.content, raw[:200])
    assert response["Content-Type"] == "application/json"
