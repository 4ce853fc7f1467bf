"""Self-serve onboarding: agents imported from CSV (validated row by row, all or nothing or each
row alone, idempotent), added one by one, invited by email to set a password, and routed at once."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from apps.assignment import services
from apps.assignment.models import Agent, AgentQueue, Presence
from apps.assignment.services import onboarding
from apps.core.errors import ApplicationError
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import QueueFactory, make_case

pytestmark = pytest.mark.django_db

HEADER = "name,email,queues,skills,capacity,channel_weights\n"
GOOD = (HEADER
        + "Ada Lovelace,ada@example.com,refunds:2;billing:1,english;refunds,4,\n"
        + "Grace Hopper,Grace@Example.com,billing,,,\n")
IMPORT = "/admin/assignment/agent/import/"
INVITE = "/admin/assignment/agent/invite/"


@pytest.fixture
def queues():
    return {slug: QueueFactory(slug=slug, config__routing={"offers": False})
            for slug in ("refunds", "billing")}


@pytest.fixture
def ops():
    return UserFactory(username="ops-onboard", roles=["ops"])


def run(text: str | bytes, mode: str = onboarding.ALL_OR_NOTHING, *, by=None):
    data = text.encode() if isinstance(text, str) else text
    return services.agents_import_csv(file=data, mode=mode, invited_by=by, base_url="http://testserver/")


def links_of(agent: Agent) -> dict[str, int]:
    return dict(AgentQueue.objects.filter(agent=agent).values_list("queue__slug", "priority"))


def writes(queries) -> list[str]:
    return [q["sql"] for q in queries if q["sql"].split(" ", 1)[0] in ("INSERT", "UPDATE", "DELETE")]


def test_good_file_creates_agents_users_links_and_invitations(queues, ops, mailoutbox,
                                                              django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        report = run(GOOD, by=ops)

    assert report.ok and report.written and report.counts["created"] == 2
    ada = Agent.objects.select_related("user").get(user__email="ada@example.com")
    assert (ada.display_name, ada.skills, ada.capacity) == ("Ada Lovelace", ["english", "refunds"], 4)
    assert links_of(ada) == {"refunds": 2, "billing": 1}
    grace = Agent.objects.select_related("user").get(user__email="grace@example.com")
    assert grace.capacity == 3 and links_of(grace) == {"billing": 1} and grace.presence == Presence.OFFLINE
    for agent in (ada, grace):
        user = agent.user
        assert user.username == user.email and user.is_staff and not user.has_usable_password()
        assert list(user.groups.values_list("name", flat=True)) == ["agent"]
    assert sorted(m.to[0] for m in mailoutbox) == ["ada@example.com", "grace@example.com"]
    assert "/invite/" in mailoutbox[0].body and "offline" in mailoutbox[0].body


def test_uploading_the_same_file_again_writes_nothing(queues, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run(GOOD)
    state = Agent.objects.order_by("pk").values_list("pk", "display_name", "skills", "capacity")
    before = list(state)

    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
        again = run(GOOD)

    assert [row.outcome for row in again.rows] == ["unchanged", "unchanged"]
    assert writes(queries.captured_queries) == []
    assert list(state.all()) == before
    assert len(mailoutbox) == 2  # no second invitation


def test_changed_rows_update_in_place_and_replace_queue_links(queues):
    run(GOOD)
    ada = Agent.objects.get(user__email="ada@example.com")
    changed = (HEADER + "Ada King,ADA@example.com,billing:3,english,7,\n"
               + "Grace Hopper,grace@example.com,billing,,,\n")

    report = run(changed)

    assert [row.outcome for row in report.rows] == ["updated", "unchanged"]
    ada.refresh_from_db()
    assert (ada.display_name, ada.skills, ada.capacity) == ("Ada King", ["english"], 7)
    assert links_of(ada) == {"billing": 3}
    assert get_user_model().objects.filter(email__iexact="ada@example.com").count() == 1


BAD = (HEADER
       + "Good One,good@example.com,refunds:1,,2,\n"                       # line 2
       + "No Queue,nq@example.com,nowhere:1,,2,\n"                         # 3
       + "Bad Mail,not-an-address,refunds,,2,\n"                           # 4
       + "Twice,good@example.com,refunds,,2,\n"                            # 5
       + "Huge,huge@example.com,refunds,,500,\n"                           # 6
       + "Weights,w@example.com,refunds,,2,email:x;fax:2\n"                # 7
       + "Nul\x00Name,nul@example.com,refunds:12,,2,\n"                    # 8
       + f"{'L' * 200},long@example.com,refunds,,2,\n"                     # 9
       + "Short,short@example.com,refunds\n")                              # 10


def _errors(report) -> dict[int, dict[str, list[str]]]:
    return {row.line: row.errors for row in report.rows if row.errors}


def test_bad_rows_are_named_by_line_and_column_and_nothing_is_written(queues):
    report = run(BAD)

    errors = _errors(report)
    assert set(errors) == {3, 4, 5, 6, 7, 8, 9, 10}
    assert "Unknown or inactive queue 'nowhere'" in errors[3]["queues"][0]
    assert errors[4] == {"email": ["Not a valid email address."]}
    assert "Also on line 2" in errors[5]["email"][0]
    assert errors[6] == {"capacity": ["Between 1 and 100."]}
    assert "whole number" in errors[7]["channel_weights"][0] and "Unknown channel 'fax'" in errors[7][
        "channel_weights"][1]
    assert "NUL" in errors[8]["name"][0] and "between 1 and 9" in errors[8]["queues"][0]
    assert errors[9] == {"name": ["Text of at most 150 characters."]}
    assert errors[10] == {"row": ["3 values for 6 columns."]}
    assert not report.written and report.rows[0].outcome == "not written"
    assert not Agent.objects.exists()
    assert not get_user_model().objects.filter(email__endswith="example.com").exists()


def test_each_row_mode_writes_the_valid_rows_and_reports_the_others(queues):
    report = run(BAD, onboarding.EACH_ROW)

    assert report.written and report.counts == {"created": 1, "updated": 0, "unchanged": 0, "invalid": 8,
                                                "not written": 0}
    assert list(Agent.objects.values_list("user__email", flat=True)) == ["good@example.com"]


def test_channel_weights_are_the_agents_own_and_a_new_file_replaces_them(queues):
    csv = HEADER + "Ada,ada@example.com,refunds,,4,email:1;chat:3\n"
    assert run(csv).counts["created"] == 1
    agent = Agent.objects.get(user__email="ada@example.com")
    assert agent.channel_weights == {"email": 1, "chat": 3}

    assert run(csv).counts["unchanged"] == 1  # the same file again changes nothing
    assert run(HEADER + "Ada,ada@example.com,refunds,,4,\n").counts["updated"] == 1
    agent.refresh_from_db()
    assert agent.channel_weights == {}  # an empty column: every queue's own weights again


@pytest.mark.parametrize(("content", "expected"), [
    ("name,email,queue\nA,a@example.com,refunds\n", "Missing: queues, skills, capacity, channel_weights. "
                                                    "Unknown: queue."),
    ("Ad\xe9le,adele@example.com,refunds,,,\n".encode("latin-1"), "not UTF-8 text (line 1"),
    (HEADER.encode() + b"x" * onboarding.MAX_BYTES, "larger than the limit"),
    (b"%PDF-1.4\n", "not a CSV file"),
    (HEADER, "header but no agents"),
])
def test_files_refused_as_a_whole(queues, content, expected):
    report = run(content)
    assert not report.rows and not report.written
    assert expected in report.file_errors[0]


def test_too_many_rows_are_refused(queues, monkeypatch):
    monkeypatch.setattr(onboarding, "MAX_ROWS", 2)
    rows = "".join(f"A{n},a{n}@example.com,refunds,,,\n" for n in range(3))
    assert "more than 2 agents" in run(HEADER + rows).file_errors[0]


def test_addresses_of_merchant_users_or_other_usernames_are_refused(queues):
    from tests.factories.accounts import MerchantUserFactory

    MerchantUserFactory(user__username="shop", user__email="shop@example.com")
    UserFactory(username="taken@example.com", email="other@example.com")
    report = run(HEADER + "Shop,shop@example.com,refunds,,,\nTaken,taken@example.com,refunds,,,\n")
    assert "merchant user" in report.rows[0].errors["email"][0]
    assert "Another user" in report.rows[1].errors["email"][0]


def test_an_imported_agent_is_routed_once_they_go_available(queues):
    run(HEADER + "Ada,ada@example.com,refunds,,,\n")
    agent = Agent.objects.get()
    assert agent.presence == Presence.OFFLINE  # until they sign in and say otherwise

    services.agent_presence_set(agent=agent, presence=Presence.AVAILABLE)
    case = make_case(queue=queues["refunds"])
    assert services.assignment_batch_run().assigned == 1
    case.refresh_from_db()
    assert case.assigned_agent_id == agent.pk


def _invitation_url(mailoutbox) -> str:
    return re.search(r"http://testserver(/invite/\S+/)", mailoutbox[-1].body).group(1)


def test_invitation_link_sets_a_password_once_and_then_sign_in_works(queues, mailoutbox,
                                                                     django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.agent_invite(name="Ada", email="ada@example.com", queues={"refunds": 1}, invited_by=None,
                              base_url="http://testserver")
    link = _invitation_url(mailoutbox)
    browser = Client()

    form_page = browser.get(link, follow=True)
    assert form_page.status_code == 200 and b"offline" in form_page.content
    assert b'name="new_password1"' in form_page.content
    done = browser.post(form_page.redirect_chain[-1][0],
                        {"new_password1": "a-Long-pass-phrase-9", "new_password2": "a-Long-pass-phrase-9"})
    assert done.status_code == 302 and done["Location"] == "/admin/login/"

    signed_in = Client().post("/admin/login/", {"username": "ada@example.com",
                                                "password": "a-Long-pass-phrase-9", "next": "/admin/"})
    assert signed_in.status_code == 302 and signed_in["Location"] == "/admin/"
    # Used: the token covered the old password hash.
    assert Client().get(link).status_code == 400


def test_expired_invitation_is_refused(queues):
    services.agent_invite(name="Ada", email="ada@example.com", queues="refunds", invited_by=None)
    user = get_user_model().objects.get(email="ada@example.com")

    class Earlier(PasswordResetTokenGenerator):
        def _now(self):
            return datetime.now() - timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT + 60)

    expired = f"/invite/{urlsafe_base64_encode(force_bytes(user.pk))}/{Earlier().make_token(user)}/"
    response = Client().get(expired)
    assert response.status_code == 400 and b"expired or was already used" in response.content
    assert not get_user_model().objects.get(pk=user.pk).has_usable_password()


def test_single_add_validates_like_a_row_and_invites_again_until_accepted(queues, mailoutbox,
                                                                          django_capture_on_commit_callbacks):
    with pytest.raises(ApplicationError) as refused:
        services.agent_invite(name="", email="nope", queues="nowhere", invited_by=None)
    assert set(refused.value.errors) == {"name", "email", "queues"}

    with django_capture_on_commit_callbacks(execute=True):
        first = services.agent_invite(name="Ada", email="ada@example.com", queues="refunds", invited_by=None)
        again = services.agent_invite(name="Ada", email="ada@example.com", queues="refunds", invited_by=None)
    assert (first.outcome, again.outcome) == ("created", "unchanged")
    assert len(mailoutbox) == 2 and again.invited


def test_admin_import_page_shows_row_errors_escaped_and_is_for_ops_only(queues, ops, client):
    agent_user = UserFactory(username="agent-onboard", roles=["agent"])
    client.force_login(agent_user)
    assert client.get(IMPORT).status_code == 403 and client.get(INVITE).status_code == 403

    client.force_login(ops)
    assert client.get(IMPORT).status_code == 200
    file = SimpleUploadedFile("team.csv", (HEADER + "<b>x</b>,bad<script>,refunds,,,\n").encode())
    response = client.post(IMPORT, {"file": file, "mode": "each_row"})
    page = response.content.decode()
    assert response.status_code == 200 and "Not a valid email address." in page
    assert "bad&lt;script&gt;" in page and "bad<script>" not in page
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page


def test_admin_single_add_form_creates_the_agent(queues, ops, client, mailoutbox,
                                                 django_capture_on_commit_callbacks):
    client.force_login(ops)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(INVITE, {"name": "Ada", "email": "ada@example.com", "queues": "refunds:2",
                                        "skills": "english", "capacity": "5", "channel_weights": ""})
    assert response.status_code == 302
    agent = Agent.objects.get(user__email="ada@example.com")
    assert agent.capacity == 5 and links_of(agent) == {"refunds": 2} and len(mailoutbox) == 1

    refused = client.post(INVITE, {"name": "Bob", "email": "bob@example.com", "queues": "nowhere"})
    assert refused.status_code == 200 and b"Unknown or inactive queue" in refused.content


@pytest.mark.parametrize("weights", [{"fax": 1}, {"chat": 0}, {"chat": 2.5}, {"chat": "3"}, {"chat": 101},
                                     [1]])
def test_the_database_refuses_channel_weights_no_form_would_accept(queues, weights):
    from django.db import IntegrityError, transaction

    agent = AgentFactory(channel_weights={"chat": 3})
    with pytest.raises(IntegrityError), transaction.atomic():
        Agent.objects.filter(pk=agent.pk).update(channel_weights=weights)


def test_the_agent_form_edits_channel_weights_as_text_with_field_errors(queues):
    from apps.assignment.admin import AgentForm

    agent = AgentFactory(channel_weights={"chat": 3, "email": 1})
    assert AgentForm(instance=agent).initial["channel_weights"] == "chat:3;email:1"
    data = {"user": agent.user_id, "display_name": agent.display_name, "skills": "", "capacity": 4,
            "presence": agent.presence}
    refused = AgentForm(data={**data, "channel_weights": "chat:0;fax:2"}, instance=agent)
    assert not refused.is_valid() and list(refused.errors) == ["channel_weights"]
    assert "Unknown channel 'fax'" in " ".join(refused.errors["channel_weights"])
    form = AgentForm(data={**data, "channel_weights": "phone:2"}, instance=agent)
    assert form.is_valid(), form.errors
    form.save()
    agent.refresh_from_db()
    assert agent.channel_weights == {"phone": 2}
