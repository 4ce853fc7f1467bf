"""The Support Hub page (/hub/) and its own sign-in: merchant users only, session authentication
(throttled by django-axes like every sign-in). The page is a shell; hub.js reads and writes
through the hub API with the session and the CSRF token."""

from __future__ import annotations

from django import forms
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_POST

from apps.merchants.selectors import merchant_for_user

# The page loads only its own script and styles; a message shows in a sandboxed srcdoc iframe,
# which inherits this policy on top of its own (inline styles of the mail allowed, nothing else).
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


def _with_csp(response):
    response["Content-Security-Policy"] = PAGE_CSP
    return response


def is_hub_user(user) -> bool:
    merchant = merchant_for_user(user)
    return merchant is not None and merchant.is_active


class HubAuthenticationForm(AuthenticationForm):
    def confirm_login_allowed(self, user) -> None:
        super().confirm_login_allowed(user)
        if not is_hub_user(user):
            raise forms.ValidationError(
                "This sign-in is for merchant users. Staff work cases in the admin.", code="not_a_merchant")


class HubLoginPage(LoginView):
    template_name = "hub/login.html"
    authentication_form = HubAuthenticationForm
    redirect_authenticated_user = False
    next_page = reverse_lazy("hub")

    def get_default_redirect_url(self):
        return str(self.next_page)

    def render_to_response(self, context, **kwargs):
        return _with_csp(super().render_to_response(context, **kwargs))


@login_required(login_url=reverse_lazy("hub-login-page"))
def hub_page(request):
    if not is_hub_user(request.user):
        return _with_csp(render(request, "hub/forbidden.html", status=403))
    merchant = merchant_for_user(request.user)
    return _with_csp(render(request, "hub/index.html", {"merchant": merchant}))


@require_POST
def hub_logout(request):
    logout(request)
    return redirect("hub-login-page")
