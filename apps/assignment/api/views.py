"""Agent API (/api/v1/agent/): the calling agent's presence and heartbeat, their offers with
accept and decline, "next case" (pull), and the workspace's state poll (the websocket's fallback).
Every call acts for the caller's own agent only; another agent's offer is a 404. Also the
softphone's webhook (/api/v1/calls/), authenticated by its shared secret. Views are thin: the
rules live in apps.assignment.services."""

from __future__ import annotations

import hmac
import re

import redis
from django.conf import settings
from django.db.models import Prefetch
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import exceptions, serializers, status
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.assignment import realtime, services
from apps.assignment.api.fastpoll import CACHE_HEADERS, POLL_TOKEN_HEADER, REFUSALS, version_of
from apps.assignment.api.serializers import (
    AgentMeSerializer,
    OfferSerializer,
    PresenceSerializer,
    PulledCaseSerializer,
)
from apps.assignment.models import Agent, AgentQueue, Offer, OfferState
from apps.assignment.selectors import agent_loads
from apps.core.api.schema import ErrorSerializer
from apps.core.idempotency import idempotent


class IsAgent(BasePermission):
    """Users with an agent profile; everyone else is refused (403)."""

    message = "Only agents use this API."

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and Agent.objects.filter(user_id=user.pk).exists())


def _me(user) -> Agent:
    agent = (Agent.objects.prefetch_related(Prefetch("queue_links", AgentQueue.objects.select_related("queue")
                                                     .order_by("priority", "queue__slug")))
             .get(user_id=user.pk))
    agent.load = agent_loads([agent.pk])[agent.pk]
    return agent


class AgentMeView(APIView):
    permission_classes = [IsAgent]

    @extend_schema(summary="The calling agent: presence, capacity, load and queues",
                   responses=AgentMeSerializer)
    def get(self, request):
        return Response(AgentMeSerializer(_me(request.user)).data)


class AgentPresenceView(APIView):
    permission_classes = [IsAgent]

    @extend_schema(summary="Set the calling agent's presence (also counts as a heartbeat)",
                   request=PresenceSerializer, responses=AgentMeSerializer)
    def post(self, request):
        serializer = PresenceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.agent_presence_set(agent=services.agent_for_user(request.user),
                                    presence=serializer.validated_data["presence"])
        return Response(AgentMeSerializer(_me(request.user)).data)


class AgentHeartbeatView(APIView):
    permission_classes = [IsAgent]

    @extend_schema(summary="The agent's client is alive (keeps an available agent routable)", request=None,
                   responses={204: OpenApiResponse(description="Recorded.")})
    def post(self, request):
        services.agent_heartbeat(agent=services.agent_for_user(request.user))
        return Response(status=status.HTTP_204_NO_CONTENT)


class OfferListView(APIView):
    permission_classes = [IsAgent]

    @extend_schema(summary="The calling agent's pending offers, soonest to expire first",
                   responses=OfferSerializer(many=True))
    def get(self, request):
        offers = (Offer.objects.filter(agent__user_id=request.user.pk, state=OfferState.PENDING)
                  .select_related("case__queue").order_by("expires_at", "id"))
        return Response(OfferSerializer(offers, many=True).data)


def _offer_answer(request, offer_id, answer) -> Response:
    offer = answer(offer_id=offer_id, user=request.user)
    offer = Offer.objects.select_related("case__queue").get(pk=offer.pk)
    return Response(OfferSerializer(offer).data)


class OfferAcceptView(APIView):
    permission_classes = [IsAgent]

    @extend_schema(summary="Accept an offer: the case is yours", request=None, responses=OfferSerializer)
    def post(self, request, offer_id: int):
        return _offer_answer(request, offer_id, services.offer_accept)


class OfferDeclineView(APIView):
    permission_classes = [IsAgent]

    @extend_schema(summary="Decline an offer: the case goes to someone else, never back to you",
                   request=None, responses=OfferSerializer)
    def post(self, request, offer_id: int):
        return _offer_answer(request, offer_id, services.offer_decline)


class NextCaseView(APIView):
    permission_classes = [IsAgent]

    @extend_schema(
        summary="Take the next best case (pull)",
        description=("Ranked by the engine's rules: your first-priority queues first, then most urgent, then "
                     "oldest; only cases your skills and spare capacity allow, never one you declined. "
                     "The case is assigned to you at once. 204 when nothing waiting fits you."),
        request=None,
        responses={200: PulledCaseSerializer, 204: OpenApiResponse(description="Nothing waiting fits you.")},
    )
    @idempotent
    def post(self, request):
        case = services.case_next_for_agent(user=request.user)
        if case is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(PulledCaseSerializer(case).data)


class AgentStateView(APIView):
    # The poll runs every couple of seconds per tab while its websocket is down: the per-tab
    # token (minted with the workspace page) stands for the session, which lives in PostgreSQL,
    # so an unchanged state answers 304 after one Redis call and no database query at all.
    authentication_classes = []
    permission_classes = []

    @extend_schema(
        summary="The calling agent's workspace state (short-poll fallback of the websocket)",
        description=(f"Authenticated by the workspace tab's `{POLL_TOKEN_HEADER}` header. Send the last ETag "
                     "in If-None-Match: 304 while nothing changed. At most WORKSPACE_POLL_RATE_PER_SECOND "
                     "polls per second per agent across all tabs (429 with Retry-After)."),
        request=None,
        responses={200: OpenApiResponse(description="The state, with its version as ETag."),
                   304: OpenApiResponse(description="Unchanged."),
                   401: OpenApiResponse(ErrorSerializer, description="Missing or expired poll token."),
                   429: OpenApiResponse(ErrorSerializer, description="Too many polls."),
                   503: OpenApiResponse(ErrorSerializer, description="The state store is unreachable.")},
    )
    def get(self, request):
        # Under ASGI, fastpoll.PollFastPath answers most polls before they reach here.
        known = version_of(request.headers.get("If-None-Match", ""))
        try:
            outcome, _agent_id, state = realtime.state_poll(token=request.headers.get(POLL_TOKEN_HEADER, ""),
                                                            known_version=known)
        except redis.RedisError:
            return Response({"detail": "The workspace state is unavailable; try again shortly."},
                            status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "2"})
        if outcome in REFUSALS:
            code, detail, headers = REFUSALS[outcome]
            return Response({"detail": detail}, status=code, headers=headers)
        if outcome == "not_modified":
            return Response(status=status.HTTP_304_NOT_MODIFIED,
                            headers={**CACHE_HEADERS, "ETag": f'"{known}"'})
        return Response(state, headers={**CACHE_HEADERS, "ETag": f'"{state.get("version", 0)}"'})


SOFTPHONE_REALM = "softphone"


class SoftphoneAuthentication(BaseAuthentication):
    """`Authorization: Bearer <CASEHUB_SOFTPHONE_SECRET>`, compared in constant time. The request
    then acts as the softphone's own account (services.softphone_user)."""

    def authenticate(self, request):
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"bearer":
            return None
        secret = settings.CASEHUB_SOFTPHONE_SECRET
        if not secret:
            raise exceptions.PermissionDenied("The softphone is not configured on this server.")
        if len(parts) != 2 or not hmac.compare_digest(parts[1], secret.encode("utf-8")):
            raise exceptions.AuthenticationFailed("Invalid softphone secret.")
        return services.softphone_user(), SOFTPHONE_REALM

    def authenticate_header(self, request) -> str:
        return f'Bearer realm="{SOFTPHONE_REALM}"'


class SoftphoneAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.assignment.api.views.SoftphoneAuthentication"
    name = "softphoneSecret"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer",
                "description": "The shared secret CASEHUB_SOFTPHONE_SECRET of this server."}


class HasSoftphoneSecret(BasePermission):
    """Only the secret lets a request in: a signed-in person has no business reporting calls."""

    def has_permission(self, request, view) -> bool:
        return request.auth == SOFTPHONE_REALM


_USERNAME = re.compile(r"[\w.@+-]{1,150}")
_MAX_ID = 2**63 - 1


@extend_schema_field({"oneOf": [{"type": "integer", "minimum": 1, "maximum": _MAX_ID},
                                {"type": "string", "pattern": r"^[\w.@+-]{1,150}$"}],
                      "description": "The agent who answered: their agent id, or their username."})
class AgentRefField(serializers.Field):
    default_error_messages = {"invalid": "An agent id (a positive integer) or a username."}

    def to_internal_value(self, data):
        if isinstance(data, int) and not isinstance(data, bool) and 1 <= data <= _MAX_ID:
            return data
        if isinstance(data, str) and _USERNAME.fullmatch(data):
            return data
        self.fail("invalid")

    def to_representation(self, value):
        return value


class CallEventSerializer(serializers.Serializer):
    call_id = serializers.RegexField(r"^[!-~]{1,128}$", max_length=128,
                                     help_text="The softphone's id of the call: 1-128 printable ASCII "
                                               "characters, no spaces.")
    event = serializers.ChoiceField(choices=services.CALL_EVENTS)
    caller = serializers.CharField(max_length=40, allow_blank=True, allow_null=True, trim_whitespace=True,
                                   help_text="The caller's number with country code (+49 30 123456); "
                                             "blank or null when withheld.")
    agent = AgentRefField()
    duration_seconds = serializers.IntegerField(min_value=0, max_value=services.MAX_CALL_DURATION_SECONDS,
                                                required=False, allow_null=True,
                                                help_text="With 'ended' only: how long the call lasted.")


class CallAnswerSerializer(serializers.Serializer):
    call_id = serializers.CharField()
    event = serializers.ChoiceField(choices=services.CALL_EVENTS)
    case = serializers.UUIDField(source="case.pk", help_text="The case the call is recorded on.")
    agent = serializers.IntegerField(source="agent_id", allow_null=True)
    created_case = serializers.BooleanField(help_text="The call opened this case (no open case of the "
                                                      "caller was found).")
    at = serializers.DateTimeField(help_text="When the event was recorded (the first time).")
    duration_seconds = serializers.IntegerField(allow_null=True)


class CallEventView(APIView):
    authentication_classes = [SoftphoneAuthentication]
    permission_classes = [HasSoftphoneSecret]

    @extend_schema(
        summary="Record a softphone call event (screen pop on answer)",
        description=("answered: the caller's newest open case (by customer_ref, the number in E.164) or a "
                     "new phone case in CASEHUB_PHONE_QUEUE is assigned to the agent and opened in every "
                     "workspace tab of theirs; ended: the duration goes into the case's timeline. "
                     "Idempotent per (call_id, event): a replay records nothing and answers as the first "
                     "time did."),
        request=CallEventSerializer,
        responses={200: CallAnswerSerializer,
                   409: OpenApiResponse(ErrorSerializer, description="The agent is at capacity, or no phone "
                                                                     "queue takes new cases.")},
    )
    @idempotent
    def post(self, request):
        serializer = CallEventSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        answer = services.call_event_record(call_id=data["call_id"], event=data["event"],
                                            caller=data["caller"] or "", agent=data["agent"],
                                            duration_seconds=data.get("duration_seconds"))
        return Response(CallAnswerSerializer(answer).data)
