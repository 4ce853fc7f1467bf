"""Agent API (/api/v1/agent/): the calling agent's presence and heartbeat, their offers with
accept and decline, "next case" (pull), and the workspace's state poll (the websocket's fallback).
Every call acts for the caller's own agent only; another agent's offer is a 404. Views are thin:
the rules live in apps.assignment.services."""

from __future__ import annotations

import redis
from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.assignment import realtime, services
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


POLL_TOKEN_HEADER = "X-Poll-Token"


def _version_of(etag: str) -> str:
    return etag.strip().removeprefix("W/").strip('"')


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
        known = _version_of(request.headers.get("If-None-Match", ""))
        try:
            outcome, _agent_id, state = realtime.state_poll(token=request.headers.get(POLL_TOKEN_HEADER, ""),
                                                            known_version=known)
        except redis.RedisError:
            return Response({"detail": "The workspace state is unavailable; try again shortly."},
                            status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "2"})
        if outcome == "unauthorized":
            return Response({"detail": "Missing or expired poll token; reload the workspace."},
                            status=status.HTTP_401_UNAUTHORIZED, headers={"WWW-Authenticate": "PollToken"})
        if outcome == "limited":
            return Response({"detail": "Too many polls; slow down."},
                            status=status.HTTP_429_TOO_MANY_REQUESTS,
                            headers={"Retry-After": "1"})
        headers = {"Cache-Control": "private, no-cache"}
        if outcome == "not_modified":
            return Response(status=status.HTTP_304_NOT_MODIFIED, headers={**headers, "ETag": f'"{known}"'})
        return Response(state, headers={**headers, "ETag": f'"{state.get("version", 0)}"'})
