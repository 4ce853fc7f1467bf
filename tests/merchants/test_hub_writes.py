"""Support Hub writes: replies and new cases with attachments (limits and refusals as field-level
4xx, never a 500), Idempotency-Key replays, stored XSS coming back inert, and tenant isolation of
every endpoint (another merchant's ids answer 404 exactly like missing ones, and change nothing)."""

from __future__ import annotations

import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from apps.cases.models import Attachment, Case, CaseEvent, Message, MessageSource, Source
from apps.merchants.models import CaseReadState, MessageRead
from tests.factories.merchants import PNG, agent_reply, hub_case, hub_member, hub_token, png

pytestmark = pytest.mark.django_db
API = "/api/v1/hub/"
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'


@pytest.fixture
def member():
    return hub_member(user__username="green-basket")


@pytest.fixture
def hub(api_client, member):
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {hub_token(member)}")
    return api_client


def reply(hub, case, **data):
    return hub.post(f"{API}cases/{case.pk}/messages/", data, format="multipart")


def test_a_reply_with_files_is_stored_on_the_case(hub, member):
    case = hub_case(member)
    response = reply(hub, case, text="Photo of the damage", files=[png("damage.png"), png("second.png")])
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["direction"] == "inbound" and body["is_read"] is True
    assert [a["filename"] for a in body["attachments"]] == ["damage.png", "second.png"]
    message = Message.objects.get(pk=body["id"])
    assert (message.case_id, message.source) == (case.pk, MessageSource.HUB)
    assert message.sender_user_id == member.user.pk
    assert message.attachments.count() == 2
    assert CaseEvent.objects.filter(case=case, kind="message").count() == 1


def test_a_reply_with_an_idempotency_key_is_stored_once(hub, member):
    case = hub_case(member)
    url = f"{API}cases/{case.pk}/messages/"
    first, again = (hub.post(url, {"text": "once", "files": [png()]}, format="multipart",
                             HTTP_IDEMPOTENCY_KEY="reply-1") for _ in range(2))
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert Message.objects.filter(case=case).count() == 1 and Attachment.objects.count() == 1


def test_merchants_open_a_case_with_its_first_message(hub, member, settings):
    settings.CASEHUB_HUB_QUEUE = "general"
    hub_case(member)  # makes the "general" queue
    response = hub.post(f"{API}cases/", {"subject": "Card reader broken", "text": "It beeps.",
                                         "files": [png("reader.png")]}, format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    case = Case.objects.get(pk=body["id"])
    assert (case.queue.slug, case.source) == ("general", Source.HUB)
    assert case.merchant_ref == member.merchant.external_id
    assert body["subject"] == "Card reader broken" and body["unread_count"] == 0
    assert [entry["kind"] for entry in body["activity"]] == ["opened", "message"]
    assert case.messages.get().attachments.get().filename == "reader.png"


def test_a_refused_first_message_leaves_no_case(hub, member):
    hub_case(member)
    before = Case.objects.count()
    response = hub.post(f"{API}cases/", {"subject": "x", "text": "see file",
                                         "files": [SimpleUploadedFile("a.png", b"MZ\x90\x00 not a png")]},
                        format="multipart")
    assert response.status_code == 400 and "files" in response.json()["errors"]
    assert Case.objects.count() == before


def test_opening_a_case_without_a_hub_queue_is_a_clear_503(hub, member, settings):
    settings.CASEHUB_HUB_QUEUE = "no-such-queue"
    response = hub.post(f"{API}cases/", {"subject": "x", "text": "y"}, format="json")
    assert response.status_code == 503 and response.json()["code"] == "hub_unavailable"


@pytest.mark.parametrize(("files", "field_message"), [
    ([SimpleUploadedFile("invoice.pdf", b"<html><script>alert(1)</script></html>")], "not a file type"),
    # A GIF named .png: taken as the GIF it is.
    ([SimpleUploadedFile("photo.png", b"GIF89a" + b"\x00" * 20 + b"MZ")], None),
    ([SimpleUploadedFile("empty.png", b"")], "empty"),
    ([png("big.png", PNG + b"\x00" * 4096)], "larger than"),
    ([png(f"f{n}.png") for n in range(4)], "At most 3 files"),
])
def test_uploads_are_checked_by_content_with_field_messages(hub, member, settings, files, field_message):
    settings.CASEHUB_ATTACHMENT_MAX_BYTES = 1024
    settings.CASEHUB_ATTACHMENT_MAX_COUNT = 3
    case = hub_case(member)
    response = reply(hub, case, text="files", files=files)
    if field_message is None:
        assert response.status_code == 201
        (attachment,) = response.json()["attachments"]
        assert attachment["content_type"] == "image/gif" and attachment["filename"].endswith(".gif")
        return
    assert response.status_code == 400
    messages = " ".join(response.json()["errors"]["files"])
    assert field_message in messages
    assert not Message.objects.filter(case=case).exists() and not Attachment.objects.exists()


@pytest.mark.parametrize("name", ["../../../../etc/passwd.png", "..\\..\\boot.ini.png", "/abs/path.png",
                                  "....png", "\u202egnp.exe.png"])
def test_path_parts_of_file_names_never_reach_storage_or_the_shown_name(hub, member, name):
    case = hub_case(member)
    response = reply(hub, case, text="file", files=[png(name)])
    assert response.status_code == 201
    (shown,) = response.json()["attachments"]
    stored = Attachment.objects.get(pk=shown["id"])
    assert "/" not in shown["filename"] and "\\" not in shown["filename"] and ".." not in shown["filename"]
    assert "\u202e" not in shown["filename"] and shown["filename"].endswith(".png")
    assert stored.file.name.startswith("attachments/") and ".." not in stored.file.name
    assert name not in stored.file.name


def test_a_file_name_the_database_cannot_store_never_reaches_it(hub, member):
    case = hub_case(member)
    response = reply(hub, case, text="file", files=[png("a\x00b.png")])
    assert response.status_code == 201
    assert "\x00" not in Attachment.objects.get().filename


def test_a_reply_without_text_or_files_is_refused_by_field(hub, member):
    case = hub_case(member)
    response = reply(hub, case, text="   ")
    assert response.status_code == 400 and "text" in response.json()["errors"]


def test_a_body_over_the_hub_limit_is_a_413_before_it_is_read(hub, member, settings):
    settings.HUB_POST_MAX_BYTES = 2048
    case = hub_case(member)
    response = reply(hub, case, text="big", files=[png("big.png", PNG + b"\x00" * 8192)])
    assert response.status_code == 413 and response.json()["code"] == "too_large"
    assert not Message.objects.exists()


def test_stored_markup_comes_back_inert(hub, member, settings):
    hub_case(member)  # the "general" queue
    opened = hub.post(f"{API}cases/", {"subject": f"Subject {SCRIPT}", "text": f"Body {SCRIPT}{IMG}",
                                       "files": [png(f"{IMG}.png")]}, format="multipart")
    assert opened.status_code == 201, opened.json()
    case_id = opened.json()["id"]
    answered = hub.post(f"{API}cases/{case_id}/messages/", {"text": f"Reply {IMG}"}, format="multipart")
    assert answered.status_code == 201
    thread = hub.get(f"{API}cases/{case_id}/messages/").json()["results"]
    assert thread[0]["attachments"][0]["filename"] == "___img src=x onerror=alert(1)_.png"
    for message in thread:
        for field in ("html_document", "latest_reply_html"):
            assert "<script" not in message[field] and "<img" not in message[field]
        assert "&lt;" in message["html_document"]
    listed = hub.get(f"{API}cases/")
    assert listed["Content-Type"] == "application/json" and listed["X-Content-Type-Options"] == "nosniff"
    assert listed.json()["results"][0]["subject"] == f"Subject {SCRIPT}"  # data, shown as text by the page


# Tenant isolation ------------------------------------------------------------------------------

def _snapshot() -> tuple:
    return (Message.objects.count(), Attachment.objects.count(), CaseReadState.objects.count(),
            MessageRead.objects.count(), Case.objects.count(), CaseEvent.objects.count(),
            tuple(Case.objects.order_by("pk").values_list("status", "updated_at")))


ENDPOINTS = {
    "detail": ("get", lambda o: f"cases/{o['case']}/", None),
    "thread": ("get", lambda o: f"cases/{o['case']}/messages/", None),
    "thread-full": ("get", lambda o: f"cases/{o['case']}/messages/?full=1", None),
    "reply": ("post", lambda o: f"cases/{o['case']}/messages/", {"text": "hi"}),
    "read-all": ("post", lambda o: f"cases/{o['case']}/read/", {}),
    "read-up-to": ("post", lambda o: f"cases/{o['case']}/read/", {"up_to": "message"}),
    "read-one": ("post", lambda o: f"cases/{o['case']}/messages/{o['message']}/read/", None),
    "read-one-own-case": ("post", lambda o: f"cases/{o['own_case']}/messages/{o['message']}/read/", None),
    "attachment": ("get", lambda o: f"attachments/{o['attachment']}/", None),
}


@pytest.mark.parametrize("endpoint", sorted(ENDPOINTS))
def test_another_merchants_ids_answer_404_like_missing_ones_and_change_nothing(hub, member, endpoint):
    own_case = hub_case(member)
    theirs = hub_case(hub_member(), subject="Their case")
    their_message = agent_reply(theirs, files=[png()])
    their_attachment = their_message.attachments.get()
    method, path, body = ENDPOINTS[endpoint]
    foreign = {"case": theirs.pk, "message": their_message.pk, "attachment": their_attachment.pk,
               "own_case": own_case.pk}
    missing = {"case": uuid.uuid4(), "message": 2**62, "attachment": 2**62, "own_case": own_case.pk}

    def call(ids):
        data = {k: (ids["message"] if v == "message" else v) for k, v in (body or {}).items()}
        return getattr(hub, method)(f"{API}{path(ids)}", data, format="json") if body is not None \
            else getattr(hub, method)(f"{API}{path(ids)}")

    before = _snapshot()
    refused, absent = call(foreign), call(missing)
    assert refused.status_code == absent.status_code == 404, (refused.json(), absent.json())
    assert refused.json() == absent.json()
    assert _snapshot() == before
    # The list never shows it either.
    assert str(theirs.pk) not in str(hub.get(f"{API}cases/").json())
