"""Support Hub tokens and limits: login through the throttled sign-in, tokens stored hashed, expired
and revoked tokens refused (401), staff kept out, per-user rate limits answered 429 with Retry-After."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from knox.models import AuthToken

from tests.factories.accounts import UserFactory
from tests.factories.merchants import hub_member, hub_token

pytestmark = pytest.mark.django_db
API = "/api/v1/hub/"
LOGIN = f"{API}auth/login/"


@pytest.fixture
def member():
    return hub_member(user__username="corner-shop")  # password "pass"


def login(client, username="corner-shop", password="pass", **extra):
    return client.post(LOGIN, {"username": username, "password": password}, format="json", **extra)


def auth(client, token):
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_login_gives_a_token_that_is_stored_only_as_a_hash(api_client, member):
    response = login(api_client)
    assert response.status_code == 200
    token = response.json()["token"]
    assert token.startswith("hub_") and len(token) == 4 + 64
    stored = AuthToken.objects.get(user=member.user)
    assert token not in (stored.digest, stored.token_key) and len(stored.digest) == 128
    assert not AuthToken.objects.filter(digest=token).exists()
    expiry = timezone.datetime.fromisoformat(response.json()["expiry"])
    assert timedelta(0) < expiry - timezone.now() <= settings.REST_KNOX["TOKEN_TTL"]
    assert auth(api_client, token).get(f"{API}cases/").status_code == 200


def test_wrong_password_and_staff_accounts_get_no_token(api_client, member):
    assert login(api_client, password="wrong").status_code == 401
    UserFactory(username="ops-person", roles=["ops"])
    staff = login(api_client, username="ops-person")
    assert staff.status_code == 403 and "merchant users" in staff.json()["detail"]
    assert not AuthToken.objects.exists()


def test_login_failures_lock_the_username_like_every_sign_in(api_client, member):
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(api_client, password="wrong").status_code == 401
    locked = login(api_client, password="wrong")
    assert locked.status_code == 429 and locked["Retry-After"]
    refused = login(api_client)  # the right password is refused too while locked
    assert refused.status_code == 429 and "locked" in refused.json()["detail"]
    assert not AuthToken.objects.exists()


def test_an_expired_token_is_refused_and_removed(api_client, member):
    token = hub_token(member)
    AuthToken.objects.filter(user=member.user).update(expiry=timezone.now() - timedelta(seconds=1))
    response = auth(api_client, token).get(f"{API}cases/")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"
    assert "expired" in response.json()["detail"]
    assert not AuthToken.objects.exists()


def test_logout_revokes_that_token_and_logout_all_every_token(api_client, member):
    first, second, third = (hub_token(member) for _ in range(3))
    assert auth(api_client, first).post(f"{API}auth/logout/").status_code == 204
    assert auth(api_client, first).get(f"{API}cases/").status_code == 401
    assert auth(api_client, second).get(f"{API}cases/").status_code == 200
    assert auth(api_client, second).post(f"{API}auth/logout-all/").status_code == 204
    for token in (second, third):
        assert auth(api_client, token).get(f"{API}cases/").status_code == 401
    assert not AuthToken.objects.exists()


@pytest.mark.parametrize("header", [
    "Token hub_" + "0" * 64,  # the right shape, no such token
    "Token hub_" + "z" * 64,
    "Token not-a-token",
    "Token hub_" + "\u00e9" * 64,
    "Token",
])
def test_malformed_and_unknown_tokens_are_a_401(api_client, member, header):
    hub_token(member)
    response = api_client.get(f"{API}cases/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


def test_a_user_keeps_a_bounded_number_of_tokens(api_client, member, settings):
    settings.HUB_TOKEN_LIMIT_PER_USER = 3
    tokens = [login(api_client).json()["token"] for _ in range(5)]
    assert AuthToken.objects.filter(user=member.user).count() == 3
    assert auth(api_client, tokens[0]).get(f"{API}cases/").status_code == 401  # the oldest went
    assert auth(api_client, tokens[-1]).get(f"{API}cases/").status_code == 200


def test_rate_limits_answer_429_with_retry_after(api_client, member, settings):
    settings.HUB_THROTTLE_RATES = {**settings.HUB_THROTTLE_RATES, "hub": "3/min"}
    client = auth(api_client, hub_token(member))
    assert [client.get(f"{API}cases/").status_code for _ in range(3)] == [200, 200, 200]
    limited = client.get(f"{API}cases/")
    assert limited.status_code == 429 and 0 < int(limited["Retry-After"]) <= 60
    # Per user: another merchant user is not slowed down.
    assert auth(api_client, hub_token(hub_member())).get(f"{API}cases/").status_code == 200


def test_writes_have_their_own_lower_limit(api_client, member, settings):
    settings.HUB_THROTTLE_RATES = {**settings.HUB_THROTTLE_RATES, "hub_write": "1/min"}
    client = auth(api_client, hub_token(member))
    assert client.post(f"{API}cases/", {}, format="json").status_code == 400  # counted, refused on input
    limited = client.post(f"{API}cases/", {}, format="json")
    assert limited.status_code == 429 and int(limited["Retry-After"]) > 0
    assert client.get(f"{API}cases/").status_code == 200  # reads go on


def test_logins_are_limited_per_address(api_client, member, settings):
    settings.HUB_THROTTLE_RATES = {**settings.HUB_THROTTLE_RATES, "hub_login": "2/min"}
    assert [login(api_client).status_code for _ in range(2)] == [200, 200]
    limited = login(api_client)
    assert limited.status_code == 429 and limited["Retry-After"]
    assert login(api_client, REMOTE_ADDR="10.1.1.1").status_code == 200
