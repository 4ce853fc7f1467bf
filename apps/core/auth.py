"""Sign-in for the admin and the API: failed sign-ins are throttled per username and address
(django-axes), a locked-out API client gets a JSON 429 where the admin gets a page, and the
session's user is loaded with their merchant membership."""

from __future__ import annotations

import math

from axes.backends import AxesStandaloneBackend
from axes.helpers import get_client_username, get_cool_off
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.http import JsonResponse
from django.shortcuts import render
from rest_framework import authentication, exceptions

from apps.core.input import storable_text_error


class LoginThrottleBackend(AxesStandaloneBackend):
    """Refuses every sign-in of a locked-out username from the address it failed from.

    Comes first in AUTHENTICATION_BACKENDS; it never signs anyone in itself. A call without a
    request (the test client's `login`, a script) cannot come from outside, so it is let through
    to the next backend rather than refused.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class AccountBackend(ModelBackend):
    """Django's model backend; the session's user comes with their merchant membership, so the
    checks that ask "does this user act for a merchant?" on every request cost no query."""

    def get_user(self, user_id):
        users = get_user_model()._default_manager.select_related("merchant_membership__merchant")
        try:
            user = users.get(pk=user_id)
        except users.model.DoesNotExist:
            return None
        return user if self.user_can_authenticate(user) else None


def lockout_message(request) -> str:
    cool_off = get_cool_off(request)
    if not cool_off:
        return ("Too many failed sign-ins for this user from your address: sign-in is locked. "
                "Ask ops to unlock it.")
    minutes = max(1, math.ceil(cool_off.total_seconds() / 60))
    return (f"Too many failed sign-ins for this user from your address: sign-in is locked for {minutes} "
            f"minute(s). Try again later, or ask ops to unlock it.")


def _retry_after(request) -> int | None:
    cool_off = get_cool_off(request)
    return math.ceil(cool_off.total_seconds()) if cool_off else None


def lockout_response(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the answer to a sign-in refused because of a lockout."""
    status = 429
    message = lockout_message(request)
    retry_after = _retry_after(request)
    if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
        response = JsonResponse({"detail": message, "code": "locked_out"}, status=status)
    else:
        response = render(request, "admin/locked_out.html", {
            **admin.site.each_context(request), "title": "Sign-in locked", "message": message,
            "username": get_client_username(request, credentials) or "",
        }, status=status)
    if retry_after:
        response["Retry-After"] = str(retry_after)
    return response


class LockedOut(exceptions.Throttled):
    default_code = "locked_out"

    def __init__(self, request) -> None:
        super().__init__(detail=lockout_message(request))
        self.wait = _retry_after(request)  # DRF turns it into Retry-After


class ApiBasicAuthentication(authentication.BasicAuthentication):
    """HTTP Basic for API clients (realm "api"): its failures count towards the same lockout as
    the admin's sign-in form, and a locked-out client is told so (429) instead of "invalid"."""

    def authenticate_credentials(self, userid, password, request=None):
        # Credentials PostgreSQL cannot store never match a user: refuse them before the lookup.
        if storable_text_error(userid) or storable_text_error(password):
            raise exceptions.AuthenticationFailed("Invalid username/password.")
        try:
            return super().authenticate_credentials(userid, password, request)
        except exceptions.AuthenticationFailed:
            # Set by django-axes on the request it was handed while refusing or counting.
            if request is not None and getattr(request, "axes_locked_out", False):
                raise LockedOut(request) from None
            raise
