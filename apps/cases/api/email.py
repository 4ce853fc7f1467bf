"""The inbound email webhook (`POST /api/v1/email/inbound/`): the mail provider posts each raw
RFC 822 message, authenticated by a shared secret; the view reads the bytes and calls one service."""

from __future__ import annotations

import hmac

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.cases import services
from apps.core.api.parsers import MultiPartParser
from apps.core.errors import InvalidInput, PayloadTooLarge
from apps.core.idempotency import idempotent

REALM = "inbound-email"


class InboundEmailAuthentication(BaseAuthentication):
    """`Authorization: Bearer <CASEHUB_INBOUND_EMAIL_SECRET>`, compared in constant time. The
    request then acts as the webhook's own account (services.inbound_email_user)."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        secret = settings.CASEHUB_INBOUND_EMAIL_SECRET
        if not secret:
            raise exceptions.PermissionDenied("Inbound email is not configured on this server.")
        if len(parts) != 2 or not hmac.compare_digest(parts[1], secret.encode("utf-8")):
            raise exceptions.AuthenticationFailed("Invalid inbound email secret.")
        return services.inbound_email_user(), REALM

    def authenticate_header(self, request) -> str:
        return f'Bearer realm="{REALM}"'


class InboundEmailAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.cases.api.email.InboundEmailAuthentication"
    name = "inboundEmailSecret"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "The shared secret CASEHUB_INBOUND_EMAIL_SECRET of this server."}


class HasInboundEmailSecret(BasePermission):
    """Only the secret lets a request in: a signed-in person has no business posting mail."""

    def has_permission(self, request, view) -> bool:
        return request.auth == REALM


class RawEmailParser(BaseParser):
    """The body is the mail itself: handed over as bytes, never decoded."""

    media_type = "message/rfc822"

    def parse(self, stream, media_type=None, parser_context=None):
        return {"email": stream.read() if stream is not None else b""}


class OctetStreamEmailParser(RawEmailParser):
    media_type = "application/octet-stream"


class InboundEmailFormSerializer(serializers.Serializer):
    """The form some providers post: the raw message as the field (or file) `email`."""

    email = serializers.FileField(help_text="The raw RFC 822 message.")


class DroppedAttachmentSerializer(serializers.Serializer):
    filename = serializers.CharField()
    reason = serializers.CharField()


class InboundEmailResultSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["created", "duplicate", "ignored"],
        help_text="created: stored (201); duplicate: this Message-ID was stored before, nothing new "
                  "(200); ignored: an auto-reply or bounce that belongs to no case (200).")
    message = serializers.IntegerField(allow_null=True, help_text="The stored message's id.")
    case = serializers.UUIDField(allow_null=True)
    created_case = serializers.BooleanField(help_text="The mail opened a new case.")
    detail = serializers.CharField(allow_blank=True)
    dropped_attachments = DroppedAttachmentSerializer(many=True,
                                                      help_text="Files refused by the upload rules.")


def _raw_email(request) -> bytes:
    """The posted mail's bytes, refused with a 413 past CASEHUB_INBOUND_EMAIL_MAX_BYTES."""
    limit = settings.CASEHUB_INBOUND_EMAIL_MAX_BYTES
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit, errors={"email": [f"Mail larger than {limit} bytes is refused."]})
    value = request.data.get("email") if hasattr(request.data, "get") else None
    if value is None:
        raise InvalidInput("No email in the request.", errors={
            "email": ["Post the raw message as the body, or as the form field 'email'."]})
    if hasattr(value, "read"):
        if value.size > limit:
            raise PayloadTooLarge(limit, errors={"email": [f"Mail larger than {limit} bytes is refused."]})
        value = value.read()
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    if len(raw) > limit:
        raise PayloadTooLarge(limit, errors={"email": [f"Mail larger than {limit} bytes is refused."]})
    return raw


class InboundEmailView(APIView):
    authentication_classes = [InboundEmailAuthentication]
    permission_classes = [HasInboundEmailSecret]
    parser_classes = [RawEmailParser, OctetStreamEmailParser, MultiPartParser]

    @extend_schema(
        summary="Receive one inbound email (provider webhook)",
        description=(
            "The body is the raw RFC 822 message (`message/rfc822` or `application/octet-stream`), or a "
            "multipart form with the message as field `email`. The mail is stored on the case it "
            "answers (In-Reply-To / References, then the `[case:<id>]` token in its subject) or opens "
            "a case in the inbound queue. A Message-ID stored before answers 200 and stores nothing."),
        request={"message/rfc822": OpenApiTypes.BINARY, "application/octet-stream": OpenApiTypes.BINARY,
                 "multipart/form-data": InboundEmailFormSerializer},
        responses={201: InboundEmailResultSerializer, 200: InboundEmailResultSerializer},
    )
    @idempotent
    def post(self, request):
        result = services.message_receive_email(raw=_raw_email(request))
        message = result.message
        if result.duplicate:
            state, detail = "duplicate", "This message was received before; nothing new was stored."
        elif message is None:
            state, detail = "ignored", result.ignored
        else:
            state, detail = "created", "Stored."
        body = {
            "status": state, "detail": detail, "message": message.pk if message else None,
            "case": result.case.pk if result.case else None, "created_case": result.created_case,
            "dropped_attachments": message.dropped_attachments if message else [],
        }
        code = status.HTTP_201_CREATED if state == "created" else status.HTTP_200_OK
        return Response(InboundEmailResultSerializer(body).data, status=code)
