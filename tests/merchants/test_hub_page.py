"""The /hub/ page's server side: its own sign-in for merchant users only (throttled like every
sign-in), a strict CSP, escaped text, and the page's API calls working with the session and CSRF."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from tests.factories.accounts import MerchantFactory, UserFactory
from tests.factories.merchants import hub_case, hub_member

pytestmark = pytest.mark.django_db
SCRIPT = "<script>alert(1)</script>"


def sign_in(client, username, password="pass"):
    return client.post("/hub/login/", {"username": username, "password": password})


def test_a_merchant_user_signs_in_and_gets_the_page():
    member = hub_member(user__username="shop", merchant=MerchantFactory(name=f"Shop {SCRIPT}"))
    client = Client()
    assert client.get("/hub/").url.startswith("/hub/login/")
    response = sign_in(client, "shop")
    assert response.status_code == 302 and response.url == "/hub/"
    page = client.get("/hub/")
    html = page.content.decode()
    assert page.status_code == 200 and member.merchant.external_id not in html
    assert "Shop &lt;script&gt;alert(1)&lt;/script&gt;" in html and SCRIPT not in html
    csp = page["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-eval" not in csp
    assert '<script src="/static/hub/hub.js" defer></script>' in html
    assert client.get("/static/hub/hub.js").status_code == 200


def test_staff_cannot_sign_in_to_the_hub_and_a_staff_session_is_refused():
    UserFactory(username="ops-hub", roles=["ops"])
    client = Client()
    response = sign_in(client, "ops-hub")
    assert response.status_code == 200 and "for merchant users" in response.content.decode()
    client.force_login(UserFactory(username="agent-hub", roles=["agent"]))
    assert client.get("/hub/").status_code == 403


def test_hub_sign_in_failures_lock_the_username():
    hub_member(user__username="locked-shop")
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, "locked-shop", "wrong").status_code == 200
    assert sign_in(client, "locked-shop", "wrong").status_code == 429
    assert sign_in(client, "locked-shop").status_code == 429
    assert client.get("/hub/").status_code == 302


def test_the_pages_api_calls_need_the_csrf_token():
    member = hub_member(user__username="csrf-shop")
    case = hub_case(member)
    client = Client(enforce_csrf_checks=True)
    client.force_login(member.user)
    url = f"/api/v1/hub/cases/{case.pk}/read/"
    assert client.get("/api/v1/hub/cases/").status_code == 200
    assert client.post(url, {}, content_type="application/json").status_code == 403
    token = client.get("/hub/").context["csrf_token"]
    assert client.post(url, {}, content_type="application/json", headers={"X-CSRFToken": str(token)}
                       ).status_code == 200


def test_sign_out_ends_the_session():
    member = hub_member(user__username="bye-shop")
    client = Client()
    client.force_login(member.user)
    assert client.post("/hub/logout/").url == "/hub/login/"
    assert client.get("/hub/").status_code == 302
