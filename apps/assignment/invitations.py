"""The page an invited agent opens from their email to set a password (Django's password-reset
token: it lapses after PASSWORD_RESET_TIMEOUT and once a password is set)."""

from django.contrib import messages
from django.contrib.auth.views import PasswordResetConfirmView
from django.urls import reverse_lazy

from apps.core.roles import AGENT


class AgentInvitationView(PasswordResetConfirmView):
    template_name = "assignment/invitation.html"
    success_url = reverse_lazy("admin:login")
    title = "Set your password"

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        # Invitations are for agents; any other account's token opens nothing here.
        return user if user is not None and user.groups.filter(name=AGENT).exists() else None

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        if not context.get("validlink"):
            context["title"] = "This invitation cannot be used"
        return context

    def render_to_response(self, context, **response_kwargs):
        # A refused link says so in its status too, not only in words.
        if not context.get("validlink"):
            response_kwargs.setdefault("status", 400)
        return super().render_to_response(context, **response_kwargs)

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password is set: sign in with your email address and password.")
        return response
