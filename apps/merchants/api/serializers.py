"""Serializers of the Support Hub API: shapes only. Writes go through the services; what a merchant
sees of a message is decided here field by field (an agent is named, never addressed)."""

from __future__ import annotations

from django.urls import reverse
from django.utils.html import escape, linebreaks
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.cases.models import Attachment, Case, Message, MessageDirection, MessageSource, Status
from apps.core.input import BIGINT_MAX
from apps.merchants.mail import cid_references, html_for_iframe, html_sanitize

ACTIVITY_KINDS = (
    ("opened", "The case was opened"),
    ("status_changed", "The case's status changed"),
    ("message", "A message was added"),
)


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as `Authorization: Token <token>`. Shown once; only a hash "
                                            "is kept.")
    expiry = serializers.DateTimeField(allow_null=True, help_text="When the token stops working.")


class HubCaseSerializer(serializers.ModelSerializer):
    last_activity_at = serializers.DateTimeField(
        read_only=True, help_text="The newest message's time or the case's last update, whichever is later.")
    unread_count = serializers.IntegerField(
        read_only=True, min_value=0, help_text="Messages you have not read (your own never count).")

    class Meta:
        model = Case
        fields = ["id", "subject", "status", "created_at", "last_activity_at", "unread_count"]
        read_only_fields = fields


def sender_name(message: Message) -> str:
    """Who a merchant sees as the sender. Agents by display name only: their address, and the
    address mail went out from, stay inside."""
    user = message.sender_user
    if message.direction == MessageDirection.OUTBOUND:
        agent = getattr(user, "agent", None) if user is not None else None
        if agent is not None and agent.display_name:
            return agent.display_name
        name = message.sender_name
        return name if name and "@" not in name else "Support team"
    if message.sender_name:
        return message.sender_name
    if message.source == MessageSource.HUB and user is not None:
        return user.get_full_name() or user.get_username()
    return message.sender_address or "Unknown sender"


class HubMessageSummarySerializer(serializers.ModelSerializer):
    sender = serializers.SerializerMethodField()

    class Meta:
        model = Message
        fields = ["id", "direction", "sender", "sent_at"]
        read_only_fields = fields

    def get_sender(self, message: Message) -> str:
        return sender_name(message)


class HubAttachmentSerializer(serializers.ModelSerializer):
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Attachment
        fields = ["id", "filename", "content_type", "size", "download_url"]
        read_only_fields = fields

    def get_download_url(self, attachment: Attachment) -> str:
        return reverse("hub-attachment", kwargs={"attachment_id": attachment.pk})


def _text_as_html(text: str) -> str:
    return linebreaks(escape(text))


def _with_inline_images(html: str, message: Message) -> str:
    """`cid:` image sources pointed at the message's own attachments' download URLs (site-relative,
    which html_for_iframe keeps); any other cid: stays unresolved and shows nothing."""
    referenced = cid_references(html)
    if not referenced:
        return html
    urls = {a.content_id.strip("<>"): reverse("hub-attachment", kwargs={"attachment_id": a.pk})
            for a in message.attachments.all() if a.content_id}
    for content_id in referenced:
        if content_id in urls:
            html = html.replace(f"cid:{content_id}", urls[content_id])
    return html


class HubMessageSerializer(HubMessageSummarySerializer):
    """A message of the thread. `html_document` is a whole HTML document (sanitised, with its own
    CSP) for an iframe's srcdoc: the latest reply, or the whole message with `?full=1`."""

    latest_reply_html = serializers.CharField(read_only=True, help_text="Sanitised HTML of the latest reply.")
    html_document = serializers.SerializerMethodField()
    text_body = serializers.SerializerMethodField()
    attachments = HubAttachmentSerializer(many=True, read_only=True)
    is_read = serializers.BooleanField(read_only=True)

    class Meta(HubMessageSummarySerializer.Meta):
        fields = [*HubMessageSummarySerializer.Meta.fields, "latest_reply_text", "latest_reply_html",
                  "has_quoted_history", "html_document", "text_body", "attachments", "is_read"]
        read_only_fields = fields

    def _full(self) -> bool:
        return bool(self.context.get("full"))

    @extend_schema_field(serializers.CharField(
        help_text="An HTML document for `<iframe sandbox srcdoc>`: the latest reply, or with `?full=1` "
                  "the whole message including quoted history."))
    def get_html_document(self, message: Message) -> str:
        if self._full():
            body = html_sanitize(message.html_body) if message.html_body else _text_as_html(message.text_body)
        else:
            body = message.latest_reply_html or _text_as_html(message.latest_reply_text)
        return html_for_iframe(_with_inline_images(body, message))

    @extend_schema_field(serializers.CharField(allow_null=True, help_text="The whole plain-text body; "
                                                                          "only with `?full=1`."))
    def get_text_body(self, message: Message) -> str | None:
        return message.text_body if self._full() else None


class HubActivitySerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ACTIVITY_KINDS)
    at = serializers.DateTimeField()
    status = serializers.ChoiceField(choices=Status.choices, allow_null=True,
                                     help_text="The status the case was opened in or moved to.")
    from_status = serializers.ChoiceField(choices=Status.choices, allow_null=True)
    message = HubMessageSummarySerializer(allow_null=True)


class HubCaseDetailSerializer(HubCaseSerializer):
    activity = HubActivitySerializer(many=True, read_only=True,
                                     help_text="Oldest first: opening, status changes and messages.")

    class Meta(HubCaseSerializer.Meta):
        fields = [*HubCaseSerializer.Meta.fields, "activity"]
        read_only_fields = fields


class FilesField(serializers.ListField):
    child = serializers.FileField(allow_empty_file=True, use_url=False)


class HubReplySerializer(serializers.Serializer):
    text = serializers.CharField(required=False, default="", allow_blank=True, trim_whitespace=False)
    files = FilesField(required=False, default=list, help_text="Attachments (repeat the part per file).")


class HubCaseOpenSerializer(HubReplySerializer):
    subject = serializers.CharField(max_length=Case._meta.get_field("subject").max_length)
    text = serializers.CharField(trim_whitespace=False, help_text="The first message.")


class HubReadSerializer(serializers.Serializer):
    up_to = serializers.IntegerField(
        required=False, min_value=1, max_value=BIGINT_MAX,
        help_text="Mark this message and every earlier one read; omitted: every message of the case.")


class HubReadResultSerializer(serializers.Serializer):
    unread_count = serializers.IntegerField(min_value=0)
