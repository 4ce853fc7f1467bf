"""The Support Hub API's reads: a merchant's case list (filters, search, unread counts, pinned query
count), case detail with merchant-safe activity, the thread (pinned query count, sanitised documents,
agents by name only), read markers and attachment downloads."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.cases import services as case_services
from apps.cases.models import Case
from apps.merchants.models import CaseReadState, MessageRead
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.merchants import (
    PNG,
    agent_reply,
    hub_case,
    hub_member,
    hub_post,
    hub_token,
    inbound_email,
    png,
)

pytestmark = pytest.mark.django_db
API = "/api/v1/hub/"


@pytest.fixture
def member():
    return hub_member(user__username="shop-owner")


@pytest.fixture
def client_for(api_client):
    def make(member):
        api_client.credentials(HTTP_AUTHORIZATION=f"Token {hub_token(member)}")
        return api_client
    return make


@pytest.fixture
def hub(client_for, member):
    return client_for(member)


def test_the_list_holds_only_the_merchants_cases_with_unread_counts(hub, member):
    agent = AgentFactory(display_name="Dana")
    mine = hub_case(member, subject="Mine")
    agent_reply(mine, agent, "First answer")
    agent_reply(mine, agent, "Second answer")
    hub_post(mine, member, "My own words never count")
    quiet = hub_case(member, subject="Quiet")
    other = hub_case(hub_member(), subject="Someone else's")
    agent_reply(other, agent)

    body = hub.get(f"{API}cases/").json()
    rows = {row["subject"]: row for row in body["results"]}
    assert set(rows) == {"Mine", "Quiet"} and body["count"] == 2
    assert rows["Mine"]["unread_count"] == 2 and rows["Quiet"]["unread_count"] == 0
    assert set(rows["Mine"]) == {"id", "subject", "status", "created_at", "last_activity_at", "unread_count"}
    assert rows["Quiet"]["id"] == str(quiet.pk)


def test_unread_counts_follow_each_users_own_markers(hub, member, client_for, api_client):
    case = hub_case(member)
    first, second, third = (agent_reply(case, text=f"answer {n}") for n in range(3))
    colleague = hub_member(merchant=member.merchant)

    def unread(client):
        return client.get(f"{API}cases/").json()["results"][0]["unread_count"]

    assert unread(hub) == 3
    assert hub.post(f"{API}cases/{case.pk}/messages/{second.pk}/read/").json() == {"unread_count": 2}
    assert hub.post(f"{API}cases/{case.pk}/read/", {"up_to": first.pk}, format="json").json() == {
        "unread_count": 1}
    # The watermark now covers `first`; `second` stays marked on its own until the watermark passes it.
    assert MessageRead.objects.filter(user=member.user, message=second).exists()
    assert hub.post(f"{API}cases/{case.pk}/read/", {}, format="json").json() == {"unread_count": 0}
    assert CaseReadState.objects.get(user=member.user, case=case).read_up_to == third.pk
    assert not MessageRead.objects.filter(user=member.user).exists()
    # A watermark never moves back, and a colleague's reading is theirs alone.
    hub.post(f"{API}cases/{case.pk}/read/", {"up_to": first.pk}, format="json")
    assert CaseReadState.objects.get(user=member.user, case=case).read_up_to == third.pk
    assert unread(client_for(colleague)) == 3
    agent_reply(case, text="news")
    assert unread(client_for(member)) == 1


def test_internal_notes_and_hidden_messages_are_never_counted_or_shown(hub, member):
    case = hub_case(member)
    agent_reply(case, text="Internal: merchant is difficult", internal=True)
    case_services.case_add_note(case=case, body="secret note")
    visible = agent_reply(case, text="Hello from support")

    assert hub.get(f"{API}cases/").json()["results"][0]["unread_count"] == 1
    thread = hub.get(f"{API}cases/{case.pk}/messages/").json()
    assert [m["id"] for m in thread["results"]] == [visible.pk]
    detail = hub.get(f"{API}cases/{case.pk}/").json()
    text = str(detail)
    assert "secret note" not in text and "difficult" not in text
    assert [entry["kind"] for entry in detail["activity"]] == ["opened", "message"]
    assert detail["activity"][1]["message"]["id"] == visible.pk


def test_detail_shows_status_changes_but_not_how_the_case_is_worked(hub, member):
    case = hub_case(member)
    agent = AgentFactory(display_name="Robin")
    case_services.case_assign(case=case, agent=agent)
    case_services.case_transition(case=case, to_status="in_progress", note="customer seems angry")
    detail = hub.get(f"{API}cases/{case.pk}/").json()
    assert detail["status"] == "in_progress"
    kinds = [(e["kind"], e["from_status"], e["status"]) for e in detail["activity"]]
    assert kinds == [("opened", None, "new"), ("status_changed", "new", "assigned"),
                     ("status_changed", "assigned", "in_progress")]
    assert "angry" not in str(detail) and "Robin" not in str(detail)


def test_list_filters_by_status_dates_and_subject(hub, member):
    now = timezone.now()
    old = hub_case(member, subject="Broken freezer")
    Case.objects.filter(pk=old.pk).update(created_at=now - timedelta(days=10),
                                          updated_at=now - timedelta(days=10))
    new = hub_case(member, subject="Missing invoice")
    case_services.case_transition(case=new, to_status="resolved")

    def subjects(**params):
        return {r["subject"] for r in hub.get(f"{API}cases/", params).json()["results"]}

    assert subjects(status="resolved") == {"Missing invoice"}
    assert subjects(status=["new", "resolved"]) == {"Missing invoice", "Broken freezer"}
    assert subjects(created_before=(now - timedelta(days=1)).isoformat()) == {"Broken freezer"}
    assert subjects(created_after=(now - timedelta(days=1)).isoformat()) == {"Missing invoice"}
    assert subjects(search="FREEZER") == {"Broken freezer"}
    # A message is activity: the old case becomes recent again.
    assert subjects(last_activity_after=(now - timedelta(days=1)).isoformat()) == {"Missing invoice"}
    agent_reply(old)
    assert subjects(last_activity_after=(now - timedelta(days=1)).isoformat()) == {
        "Missing invoice", "Broken freezer"}
    assert subjects(last_activity_before=(now - timedelta(days=1)).isoformat()) == set()
    refused = hub.get(f"{API}cases/", {"created_after": "2024-01-01T00:00:00+20:00", "status": "nope"})
    assert refused.status_code == 400 and set(refused.json()) == {"created_after", "status"}


@pytest.mark.parametrize("size", [2, 12])
def test_the_case_list_costs_the_same_queries_whatever_the_page_size(
        hub, member, size, django_assert_num_queries):
    agent = AgentFactory()
    for n in range(size):
        case = hub_case(member, subject=f"case {n}")
        agent_reply(case, agent)
    # Token (with user and merchant), count, page, unread counts of the page.
    with django_assert_num_queries(4):
        response = hub.get(f"{API}cases/", {"page_size": size})
    assert len(response.json()["results"]) == size
    assert all(row["unread_count"] == 1 for row in response.json()["results"])


@pytest.mark.parametrize("size", [2, 12])
def test_the_thread_costs_the_same_queries_whatever_its_length(hub, member, size, django_assert_num_queries):
    case = hub_case(member)
    agent = AgentFactory()
    for n in range(size):
        if n % 2:
            agent_reply(case, agent, f"answer {n}", files=[png(f"shot-{n}.png")])
        else:
            hub_post(case, member, f"question {n}", files=[png(f"mine-{n}.png")])
    # Token, case, count, messages (with read state and senders), attachments.
    with django_assert_num_queries(5):
        response = hub.get(f"{API}cases/{case.pk}/messages/", {"page_size": size})
    results = response.json()["results"]
    assert len(results) == size and all(len(m["attachments"]) == 1 for m in results)


def test_a_thread_message_names_agents_and_documents_the_latest_reply(hub, member):
    case = hub_case(member, subject="Refund")
    sam = UserFactory(username="sam", email="sam@corp.example", roles=["agent"])
    agent = AgentFactory(display_name="Sam Support", user=sam)
    html = ("<p>Please refund order 12.</p><div class=gmail_quote>On Mon, Shop wrote:"
            "<blockquote>Earlier text</blockquote></div>")
    mail = inbound_email(case, text="Please refund order 12.\n\nOn Mon, Shop wrote:\n> Earlier text",
                         html=html, attachments=[("receipt.png", PNG, "image", "png")])
    reply = agent_reply(case, agent, "Refund done.")
    thread = hub.get(f"{API}cases/{case.pk}/messages/").json()["results"]
    assert [m["id"] for m in thread] == [mail.pk, reply.pk]
    first, second = thread
    assert first["sender"] == "Shop Owner" and first["direction"] == "inbound"
    assert second["sender"] == "Sam Support" and second["direction"] == "outbound"
    assert "sam@corp.example" not in str(thread) and "support@casehub" not in second["sender"]
    assert first["has_quoted_history"] is True and "Earlier text" not in first["html_document"]
    assert first["html_document"].startswith("<!DOCTYPE html>")
    assert "Content-Security-Policy" in first["html_document"]
    assert first["text_body"] is None and first["is_read"] is False
    (attachment,) = first["attachments"]
    assert attachment["filename"] == "receipt.png" and attachment["content_type"] == "image/png"
    assert attachment["download_url"] == f"{API}attachments/{attachment['id']}/"

    full = hub.get(f"{API}cases/{case.pk}/messages/", {"full": "1"}).json()["results"][0]
    assert "Earlier text" in full["html_document"] and "Earlier text" in full["text_body"]


def test_own_messages_are_read_and_marks_show_in_the_thread(hub, member):
    case = hub_case(member)
    mine = hub_post(case, member, "mine")
    theirs = agent_reply(case)
    def read_flags():
        return [m["is_read"] for m in hub.get(f"{API}cases/{case.pk}/messages/").json()["results"]]

    assert read_flags() == [True, False]
    hub.post(f"{API}cases/{case.pk}/messages/{theirs.pk}/read/")
    assert read_flags() == [True, True]
    assert mine.pk < theirs.pk


def test_read_up_to_refuses_a_message_of_another_case(hub, member):
    case, other = hub_case(member), hub_case(member)
    elsewhere = agent_reply(other)
    response = hub.post(f"{API}cases/{case.pk}/read/", {"up_to": elsewhere.pk}, format="json")
    assert response.status_code == 400 and "up_to" in response.json()
    assert not CaseReadState.objects.exists()


def test_attachments_download_as_files_the_browser_never_sniffs(hub, member):
    case = hub_case(member)
    message = hub_post(case, member, "see file", files=[png("../../etc/pass wd.png")])
    attachment = message.attachments.get()
    response = hub.get(f"{API}attachments/{attachment.pk}/")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == PNG
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("attachment;")
    disposition = response["Content-Disposition"]
    assert "/" not in disposition and attachment.filename in disposition


def test_only_merchant_users_use_the_hub(api_client):
    staff = UserFactory(roles=["ops"])
    api_client.force_authenticate(staff)
    for path in ("cases/", "attachments/1/"):
        assert api_client.get(f"{API}{path}").status_code == 403
    api_client.force_authenticate(None)
    anonymous = api_client.get(f"{API}cases/")
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"] == "Token"
    inactive = hub_member()
    inactive.merchant.is_active = False
    inactive.merchant.save()
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {hub_token(inactive)}")
    assert api_client.get(f"{API}cases/").status_code == 403
