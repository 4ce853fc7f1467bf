"""Inventory API: feeds in (JSON, CSV, shopper signals), store inventory and runs out.

Merchant users see and feed only their merchant's stores; staff need inventory permissions.
Creating requests take an Idempotency-Key (apps/core/idempotency.py).
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied, UnsupportedMediaType
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api.schema import ErrorSerializer
from apps.core.errors import ApplicationError
from apps.core.idempotency import idempotent
from apps.inventory import selectors, services
from apps.inventory.api import serializers as s
from apps.inventory.models import DisplayStatus
from apps.merchants.selectors import merchant_for_user


def _store_for_feed(request, store_id: int):
    store = selectors.store_for_user(user=request.user, store_id=store_id)
    if merchant_for_user(request.user) is None and not request.user.has_perm("inventory.add_ingestionrun"):
        raise PermissionDenied("You may not submit feeds.")
    return store


def _store_for_signal(request, store_id: int):
    # A merchant user reports only for their own stores: another merchant's store answers 404
    # (its existence is not disclosed) and its predictions cannot be skewed by a competitor.
    if merchant_for_user(request.user) is not None:
        return selectors.store_for_user(user=request.user, store_id=store_id)
    # Anyone else is the shopper app's service account, which holds this permission.
    if not request.user.has_perm("inventory.add_shoppersignal"):
        raise PermissionDenied("You may not report shopper signals.")
    return selectors.store_get(store_id=store_id)


def _accepted(run) -> Response:
    body = s.FeedAcceptedSerializer(
        {"run_id": run.pk, "status": run.status, "items_total": run.items_total}
    ).data
    return Response(body, status=status.HTTP_202_ACCEPTED)


class StoreListView(generics.ListAPIView):
    serializer_class = s.StoreSerializer

    def get_queryset(self):
        return selectors.stores_for_user(self.request.user).select_related("merchant").order_by("id")


class FeedCreateView(APIView):
    """A whole store's items in one JSON request: persisted raw, processed asynchronously."""

    @extend_schema(
        request={"application/json": {"type": "object"}}, responses={202: s.FeedAcceptedSerializer}
    )
    @idempotent
    def post(self, request, store_id: int):
        store = _store_for_feed(request, store_id)
        if (request.content_type or "").split(";")[0].strip() != "application/json":
            raise UnsupportedMediaType(request.content_type)
        return _accepted(services.feed_submit_json(store=store, body=request.body))


class FeedCsvCreateView(APIView):
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": s.CsvUploadSerializer}, responses={202: s.FeedAcceptedSerializer}
    )
    @idempotent
    def post(self, request, store_id: int):
        store = _store_for_feed(request, store_id)
        upload = request.data.get("file")
        if upload is None or not hasattr(upload, "read"):
            raise ApplicationError(
                "No file.", errors={"file": ["Upload the CSV as the multipart field 'file'."]}
            )
        return _accepted(services.feed_submit_csv_upload(store=store, upload=upload))


@extend_schema_view(get=extend_schema(parameters=[
    OpenApiParameter("display_status", str, enum=DisplayStatus.values, description="Only items shown so."),
]))
class StoreItemListView(generics.ListAPIView):
    """A store's current inventory in SKU order; `?display_status=held` etc. filters it."""

    serializer_class = s.InventoryItemSerializer
    filter_backends: list = []

    def get_queryset(self):
        store = selectors.store_for_user(user=self.request.user, store_id=self.kwargs["store_id"])
        wanted = self.request.query_params.get("display_status") or None
        if wanted and wanted not in DisplayStatus.values:
            raise ApplicationError(
                "Invalid filter.",
                errors={"display_status": [f"Choose one of: {', '.join(DisplayStatus.values)}."]},
            )
        return selectors.store_items(store=store, display_status=wanted)


class StoreItemStatusView(APIView):
    """Why is this SKU (not) shown in this store? Works for SKUs that were only ever rejected."""

    @extend_schema(responses=s.ItemStatusSerializer)
    def get(self, request, store_id: int, sku: str):
        store = selectors.store_for_user(user=request.user, store_id=store_id)
        return Response(s.ItemStatusSerializer(selectors.item_status(store=store, sku=sku)).data)


class StoreRunListView(generics.ListAPIView):
    serializer_class = s.IngestionRunSerializer
    filter_backends: list = []

    def get_queryset(self):
        store = selectors.store_for_user(user=self.request.user, store_id=self.kwargs["store_id"])
        return selectors.store_runs(store=store)


class RunDetailView(generics.RetrieveAPIView):
    serializer_class = s.IngestionRunSerializer
    lookup_url_kwarg = "run_id"

    def get_queryset(self):
        return selectors.runs_for_user(self.request.user)


class SignalCreateView(APIView):
    """A shopper found (or did not find) an item at the shelf (the shopper app, or a merchant user)."""

    # 404: another merchant's store, or none (the store is named in the body, not the path).
    @extend_schema(request=s.SignalInputSerializer,
                   responses={201: s.SignalRecordedSerializer, 404: ErrorSerializer})
    @idempotent
    def post(self, request):
        data = s.SignalInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        store = _store_for_signal(request, data.validated_data["store_id"])
        signal = services.shopper_signal_record(
            store=store, sku=data.validated_data["sku"], found=data.validated_data["found"]
        )
        return Response(s.SignalRecordedSerializer({"id": signal.pk}).data, status=status.HTTP_201_CREATED)
