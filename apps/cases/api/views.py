"""Cases API: list/detail/create/transition and the proactive-signal intake. Views are thin."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.cases import selectors, services
from apps.cases.api.filters import CaseFilterSet
from apps.cases.api.permissions import CanIngestSignals, CasePermission
from apps.cases.api.serializers import (
    CaseCreateSerializer,
    CaseDetailSerializer,
    CaseNoteSerializer,
    CaseRows,
    CaseSerializer,
    CaseTransitionSerializer,
    LegacyTransferSerializer,
    SignalResultSerializer,
    SignalSerializer,
)
from apps.cases.models import Source
from apps.core.api.pagination import CappedCountPagination
from apps.core.idempotency import idempotent

DYNAMIC_FIELD_PARAMETERS = [
    OpenApiParameter(
        "field.{name}", OpenApiTypes.STR, OpenApiParameter.QUERY, required=False,
        description=("Dynamic field equals a value, e.g. `?field.reason=late` or `?field.order_total=120` "
                     "(matched as string or number/boolean; GIN-indexed containment). Repeatable with "
                     "different names; all must hold."),
    ),
    OpenApiParameter(
        "field.{name}__{op}", OpenApiTypes.NUMBER, OpenApiParameter.QUERY, required=False,
        description=("Numeric range on a dynamic field, op one of gt, gte, lt, lte: "
                     "`?field.order_total__gt=100`. Not index-backed on its own."),
    ),
]


@extend_schema_view(
    list=extend_schema(summary="List cases", parameters=DYNAMIC_FIELD_PARAMETERS),
    retrieve=extend_schema(summary="A case with its timeline", responses=CaseDetailSerializer),
)
class CaseViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    permission_classes = [CasePermission]
    filterset_class = CaseFilterSet
    serializer_class = CaseSerializer
    # A broad filter can match millions of cases: its count is capped, not exact.
    pagination_class = CappedCountPagination

    def get_queryset(self):
        if self.action == "retrieve":
            return selectors.case_detail()
        return selectors.case_list().order_by("-created_at", "id")

    def get_serializer_class(self):
        return CaseDetailSerializer if self.action == "retrieve" else CaseSerializer

    def list(self, request, *args, **kwargs):
        # A page reads CaseSerializer's columns as plain values: no model instances, and not the
        # routing decision's JSON, which only the detail shows.
        cases = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(cases.values(*CaseRows.lookups))
        return self.get_paginated_response(CaseRows.represent(page))

    @extend_schema(summary="Create a case", request=CaseCreateSerializer,
                   responses={201: CaseDetailSerializer})
    @idempotent
    def create(self, request):
        serializer = CaseCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        case = services.case_create(actor=request.user, source=Source.API, **serializer.validated_data)
        case = selectors.case_detail().get(pk=case.pk)
        return Response(CaseDetailSerializer(case).data, status=status.HTTP_201_CREATED)

    @extend_schema(summary="Move a case to another status (queue's transition table)",
                   request=CaseTransitionSerializer, responses={200: CaseDetailSerializer})
    @idempotent
    @action(detail=True, methods=["post"])
    def transition(self, request, pk=None):
        serializer = CaseTransitionSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        case = self.get_object()
        services.case_transition(case=case, to_status=serializer.validated_data["status"],
                                 note=serializer.validated_data["note"], actor=request.user)
        return Response(CaseDetailSerializer(selectors.case_detail().get(pk=case.pk)).data)

    @extend_schema(summary="Add an internal note to the timeline", request=CaseNoteSerializer,
                   responses={201: CaseDetailSerializer})
    @idempotent
    @action(detail=True, methods=["post"])
    def notes(self, request, pk=None):
        serializer = CaseNoteSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        case = self.get_object()
        services.case_add_note(case=case, body=serializer.validated_data["body"], actor=request.user)
        return Response(CaseDetailSerializer(selectors.case_detail().get(pk=case.pk)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Hand a case to the legacy CRM (out) or take it back (in)",
        description="Recorded in the timeline; while out, the case cannot be changed here.",
        request=LegacyTransferSerializer, responses={200: CaseDetailSerializer},
    )
    @idempotent
    @action(detail=True, methods=["post"], url_path="legacy-transfer")
    def legacy_transfer(self, request, pk=None):
        serializer = LegacyTransferSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        case = self.get_object()
        if data["direction"] == "out":
            services.case_legacy_transfer_out(case=case, legacy_ref=data["legacy_ref"], reason=data["reason"],
                                              actor=request.user)
        else:
            services.case_legacy_transfer_back(case=case, reason=data["reason"], actor=request.user)
        return Response(CaseDetailSerializer(selectors.case_detail().get(pk=case.pk)).data)


class SignalView(APIView):
    permission_classes = [CanIngestSignals]

    @extend_schema(
        summary="Receive a delivery signal (proactive outreach)",
        description=("Targeting rules of each queue decide whether a case is created. One case per "
                     "(delivery_id, signal_type): retries return the first outcome with 200. An experiment "
                     "split may put the delivery in the control group: recorded, but no case."),
        request=SignalSerializer, responses={201: SignalResultSerializer, 200: SignalResultSerializer},
    )
    @idempotent
    def post(self, request):
        serializer = SignalSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = services.signal_ingest(
            signal_type=data["signal_type"], delivery_ref=data["delivery_id"], payload=data["payload"],
            merchant_ref=data["merchant_id"], customer_ref=data["customer_id"], actor=request.user,
        )
        outcome = result.outcome
        body = {
            "targeted": result.targeted,
            "created": result.created,
            "queue": outcome.queue.slug if outcome else None,
            "experiment": outcome.experiment if outcome else "",
            "group": outcome.group if outcome else None,
            "case_id": outcome.case_id if outcome else None,
        }
        return Response(SignalResultSerializer(body).data,
                        status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)
