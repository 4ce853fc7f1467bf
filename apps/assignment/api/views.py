"""Agent API (/api/v1/agent/): the calling agent's presence and heartbeat, their offers with
accept and decline, and "next case" (pull). Every call acts for the caller's own agent only;
another agent's offer is a 404. Views are thin: the rules live in apps.assignment.services."""

from __future__ import annotations

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.assignment import services
from apps.assignment.api.serializers import (
    AgentMeSerializer,
    OfferSerializer,
    PresenceSerializer,
    PulledCaseSerializer,
)
from apps.assignment.models import Agent, AgentQueue, Offer, OfferState
from apps.assignment.selectors import agent_loads
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
