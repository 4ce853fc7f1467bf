"""Sign-in throttling (django-axes) on the admin form and API Basic auth, honest 401s for anonymous
API calls, and browser sessions still working against the API with CSRF."""

from __future__ import annotations

import base64

import pytest
from axes.models import AccessAttempt
from django.conf import settings
from django.db.models import F
from django.test import Client

from tests.factories.accounts import UserFactory
from tests.factories.cases import QueueFactory, make_case

pytestmark = pytest.mark.django_db
LOGIN = "/admin/login/"
CASES = "/api/v1/cases/"
LIMIT = settings.AXES_FAILURE_LIMIT


def basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def admin_login(client, username: str, password: str, **extra):
    return client.post(LOGIN, {"username": username, "password": password, "next": "/admin/"}, **extra)


def cool_off_passes() -> None:
    # Age the recorded failures past the cool-off instead of waiting for it.
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - settings.AXES_COOLOFF_TIME)


@pytest.fixture
def ops_user():
    return UserFactory(username="ops-throttle", roles=["ops"])  # password "pass"


def test_anonymous_api_call_is_a_401_with_a_basic_challenge(api_client):
    response = api_client.get(CASES)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Basic realm="api"'
    assert response["Content-Type"].startswith("application/json")
    assert "credentials were not provided" in response.json()["detail"]
    # Wrong credentials are a 401 with the same challenge, not a 403.
    wrong = api_client.get(CASES, HTTP_AUTHORIZATION=basic("nobody", "nope"))
    assert wrong.status_code == 401 and wrong["WWW-Authenticate"] == 'Basic realm="api"'


def test_signed_in_user_without_the_permission_still_gets_a_403(api_client):
    api_client.force_authenticate(UserFactory(roles=["queue-config-editor"]))
    assert api_client.get(CASES).status_code == 403


def test_admin_sign_in_locks_after_repeated_failures_until_the_cool_off(client, ops_user):
    for _ in range(LIMIT - 1):
        response = admin_login(client, "ops-throttle", "wrong")
        assert response.status_code == 200  # the login form again, with its error
        assert "correct username and password" in response.content.decode()
    locked = admin_login(client, "ops-throttle", "wrong")
    assert locked.status_code == 429
    page = locked.content.decode()
    assert 'id="lockout-message"' in page and "locked for 15 minute(s)" in page
    assert "Casehub" in page and "ops-throttle" in page  # the admin's frame, naming the user
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()

    # The right password is refused too while locked, and nobody is signed in.
    refused = admin_login(client, "ops-throttle", "pass")
    assert refused.status_code == 429 and "lockout-message" in refused.content.decode()
    assert client.get("/admin/").status_code == 302

    cool_off_passes()
    assert admin_login(client, "ops-throttle", "pass").status_code == 302
    assert client.get("/admin/").status_code == 200


def test_the_lock_holds_only_for_that_username_from_that_address(client, ops_user):
    UserFactory(username="ops-other", roles=["ops"])
    for _ in range(LIMIT):
        admin_login(client, "ops-throttle", "wrong")
    assert admin_login(client, "ops-throttle", "pass").status_code == 429
    # The same user from another address, and another user from this one, still sign in.
    assert admin_login(Client(), "ops-throttle", "pass", REMOTE_ADDR="10.0.0.9").status_code == 302
    assert admin_login(Client(), "ops-other", "pass").status_code == 302


def test_a_successful_sign_in_resets_the_count(client, ops_user):
    for _ in range(LIMIT - 1):
        admin_login(client, "ops-throttle", "wrong")
    assert admin_login(client, "ops-throttle", "pass").status_code == 302
    other = Client()
    for _ in range(LIMIT - 1):
        assert admin_login(other, "ops-throttle", "wrong").status_code == 200
    assert admin_login(other, "ops-throttle", "pass").status_code == 302


def test_api_basic_auth_failures_lock_the_client_out_with_json(api_client, ops_user):
    assert api_client.get(CASES, HTTP_AUTHORIZATION=basic("ops-throttle", "pass")).status_code == 200
    for _ in range(LIMIT - 1):
        assert api_client.get(CASES, HTTP_AUTHORIZATION=basic("ops-throttle", "wrong")).status_code == 401
    locked = api_client.get(CASES, HTTP_AUTHORIZATION=basic("ops-throttle", "wrong"))
    assert locked.status_code == 429
    assert locked["Content-Type"].startswith("application/json")
    assert "locked for 15 minute(s)" in locked.json()["detail"]
    assert int(locked["Retry-After"]) == settings.AXES_COOLOFF_TIME.total_seconds()

    refused = api_client.get(CASES, HTTP_AUTHORIZATION=basic("ops-throttle", "pass"))
    assert refused.status_code == 429 and "locked" in refused.json()["detail"]

    cool_off_passes()
    assert api_client.get(CASES, HTTP_AUTHORIZATION=basic("ops-throttle", "pass")).status_code == 200


def test_admin_and_api_failures_count_towards_one_lock(client, api_client, ops_user):
    for _ in range(LIMIT - 1):
        admin_login(client, "ops-throttle", "wrong")
    assert api_client.get(CASES, HTTP_AUTHORIZATION=basic("ops-throttle", "wrong")).status_code == 429
    assert admin_login(client, "ops-throttle", "pass").status_code == 429


def test_browser_session_calls_the_api_with_csrf(ops_user):
    case = make_case(queue=QueueFactory(slug="throttle-q"))
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(ops_user)
    browser.get("/admin/")  # sets the CSRF cookie, as the admin page would
    token = browser.cookies[settings.CSRF_COOKIE_NAME].value
    assert browser.get(CASES).status_code == 200
    url = f"{CASES}{case.pk}/notes/"
    assert browser.post(url, {"body": "no token"}, content_type="application/json").status_code == 403
    response = browser.post(url, {"body": "from the page"}, content_type="application/json",
                            HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201


def test_password_sign_in_without_a_request_still_works(client, ops_user):
    # The test client's login() authenticates without a request; only requests are throttled.
    assert client.login(username="ops-throttle", password="pass")
    assert client.get("/admin/").status_code == 200
