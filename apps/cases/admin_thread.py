"""A case's conversation on its admin page: the thread (each message's newest reply, quoted history
folded, attachments as downloads for staff, delivery state of emailed replies), the agent's
reply form, and the attachment download. Mixed into CaseAdmin; writes go through services."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.html import strip_tags

from apps.cases import selectors, services
from apps.cases.models import Attachment, DeliveryStatus
from apps.core.errors import ApplicationError


def _case_id(object_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(unquote(object_id))
    except (TypeError, ValueError):
        return None


class CaseThreadAdminMixin:
    """For CaseAdmin: adds the thread to the change page and the reply / download URLs."""

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<path:object_id>/reply/", view(self.reply_view), name="cases_case_reply"),
            path("<path:object_id>/attachments/<int:attachment_id>/", view(self.attachment_view),
                 name="cases_case_attachment"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        case_id = _case_id(object_id)
        extra = dict(extra_context or {})
        if case_id is not None:
            thread = list(selectors.message_thread(case_id))
            for message in thread:
                # Shown as text (escaped), never as the sender's HTML.
                message.quoted_text = message.text_body or strip_tags(message.html_body)
            target = selectors.message_reply_target(case_id)
            extra["casehub_thread"] = {
                "messages": thread,
                "can_reply": self.has_change_permission(request),
                "reply_to": target.sender_address if target else "",
                "reply_url": reverse("admin:cases_case_reply", args=[case_id]),
            }
        return super().change_view(request, object_id, form_url, extra)

    def reply_view(self, request, object_id):
        case = self.get_object(request, unquote(object_id))
        if case is None:
            raise Http404("No such case.")
        if not self.has_change_permission(request, case):
            raise PermissionDenied
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        internal = bool(request.POST.get("internal"))
        try:
            message = services.message_send_from_agent(
                case=case, user=request.user, text=request.POST.get("text", ""),
                files=request.FILES.getlist("files"), internal=internal)
        except ApplicationError as exc:
            detail = "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.errors.items())
            self.message_user(request, f"Nothing was sent. {exc.message} {detail}".strip(), messages.ERROR)
        else:
            if internal:
                done = "Internal note added."
            elif message.delivery_status == DeliveryStatus.PENDING:
                done = f"Reply added; it is being emailed to {', '.join(message.to_addresses)}."
            else:
                done = "Reply added (the case has no email address: the merchant sees it in the Support Hub)."
            self.message_user(request, done, messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:cases_case_change", args=[case.pk]) + "#thread")

    def attachment_view(self, request, object_id, attachment_id):
        case = self.get_object(request, unquote(object_id))
        if case is None:
            raise Http404("No such case.")
        if not self.has_view_permission(request, case):
            raise PermissionDenied
        attachment = Attachment.objects.filter(pk=attachment_id, case=case).first()
        if attachment is None:
            raise Http404("No such attachment.")
        # Always a download (never shown inline) under its sniffed type; a sandbox keeps any
        # active content of it away from the admin's origin should a browser render it anyway.
        response = FileResponse(attachment.file.open("rb"), as_attachment=True, filename=attachment.filename,
                                content_type=attachment.content_type)
        response["Content-Security-Policy"] = "sandbox"
        return response
