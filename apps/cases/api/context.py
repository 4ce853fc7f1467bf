"""Change events from outside systems (`POST /api/v1/context/events/`): authenticated by a shared
secret, they only tag cached context records stale; the next read fetches them again."""

from __future__ import annotations

import hmac

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.cases.context import services
from apps.cases.context.models import KEY_MAX_LENGTH, ContextType
from apps.core.idempotency import idempotent

REALM = "context-events"


class ContextEventsAuthentication(BaseAuthentication):
    """`Authorization: Bearer <CASEHUB_CONTEXT_EVENTS_SECRET>`, compared in constant time."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        secret = settings.CASEHUB_CONTEXT_EVENTS_SECRET
        if not secret:
            raise exceptions.PermissionDenied("Context events are not configured on this server.")
        if len(parts) != 2 or not hmac.compare_digest(parts[1], secret.encode("utf-8")):
            raise exceptions.AuthenticationFailed("Invalid context events secret.")
        return services.context_events_user(), REALM

    def authenticate_header(self, request) -> str:
        return f'Bearer realm="{REALM}"'


class ContextEventsAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.cases.api.context.ContextEventsAuthentication"
    name = "contextEventsSecret"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "The shared secret CASEHUB_CONTEXT_EVENTS_SECRET of this server."}


class HasContextEventsSecret(BasePermission):
    """Only the secret lets a request in: staff bust the cache in the admin instead."""

    def has_permission(self, request, view) -> bool:
        return request.auth == REALM


class KeyField(serializers.CharField):
    """A key as the outside system spells it: a JSON string only (a number is not silently a key)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class ContextEventSerializer(serializers.Serializer):
    type = serializers.ChoiceField(choices=ContextType.choices, help_text="Which outside system changed.")
    keys = serializers.ListField(
        child=KeyField(max_length=KEY_MAX_LENGTH, trim_whitespace=False),
        allow_empty=False,
        help_text="Keys of the records that changed (at most CASEHUB_CONTEXT_EVENTS_MAX_KEYS).")

    def validate_keys(self, keys: list[str]) -> list[str]:
        limit = settings.CASEHUB_CONTEXT_EVENTS_MAX_KEYS
        if len(keys) > limit:
            raise serializers.ValidationError(f"At most {limit} keys per event; send several events.")
        return list(dict.fromkeys(keys))


class ContextEventResultSerializer(serializers.Serializer):
    type = serializers.CharField()
    keys = serializers.IntegerField(help_text="Distinct keys in the event.")
    tagged = serializers.IntegerField(help_text="Cached records tagged stale (keys not cached need nothing).")


class ContextEventsView(APIView):
    authentication_classes = [ContextEventsAuthentication]
    permission_classes = [HasContextEventsSecret]

    @extend_schema(
        summary="Announce changed records of an outside system",
        description=(
            "An outside system (delivery, customer, merchant, HR) announces that records changed. The "
            "cached copies are only tagged stale, in one statement; each is fetched again on its next "
            "read. Keys that are not cached are ignored."),
        request=ContextEventSerializer,
        responses={202: ContextEventResultSerializer},
    )
    @idempotent
    def post(self, request):
        serializer = ContextEventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        type, keys = serializer.validated_data["type"], serializer.validated_data["keys"]
        tagged = services.context_mark_stale(type=type, keys=keys)
        body = {"type": type, "keys": len(keys), "tagged": tagged}
        return Response(ContextEventResultSerializer(body).data, status=status.HTTP_202_ACCEPTED)
