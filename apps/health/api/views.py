"""Health API: the rollout gate, the system roll-up, and specs (list, read, apply with PUT, delete).

Specs written here pass the same admission service as admin and `apply_health_specs`.

Gate access: a deploy pipeline sends `Authorization: Bearer <token>` when settings.HEALTH_GATE_TOKEN
is set; otherwise (or in addition) an authenticated user with `health.view_healthspec` may call it.
"""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.api.pagination import DefaultPagination
from apps.core.api.schema import ErrorSerializer
from apps.core.errors import ApplicationError
from apps.health.selectors import (
    health_check_status,
    health_spec_gate,
    health_spec_get,
    health_spec_list,
    health_spec_overview,
    health_spec_status,
    health_system_status,
)
from apps.health.services import health_spec_apply, health_spec_delete
from apps.health.views import bearer_token_matches


class CanViewHealth(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        token = settings.HEALTH_GATE_TOKEN
        if token and bearer_token_matches(request, token):
            return True
        return bool(request.user and request.user.is_authenticated
                    and request.user.has_perm("health.view_healthspec"))


class FailingCheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    status = serializers.CharField()
    message = serializers.CharField()
    at = serializers.DateTimeField(allow_null=True)


class GateSerializer(serializers.Serializer):
    spec = serializers.CharField()
    status = serializers.CharField()
    failing = FailingCheckSerializer(many=True)


class GateView(APIView):
    """200 when the spec's overall status is success; 503 (with the failing checks) otherwise."""

    permission_classes = [CanViewHealth]

    @extend_schema(parameters=[OpenApiParameter("spec", str, required=True)],
                   responses={200: GateSerializer, 503: GateSerializer, 404: ErrorSerializer})
    def get(self, request):
        name = request.query_params.get("spec", "").strip()
        if not name:
            raise ApplicationError("Name the spec to gate on.",
                                   errors={"spec": ["This parameter is required."]})
        gate = health_spec_gate(name=name)
        body = GateSerializer(gate).data
        response = Response(body, status=200 if gate.status == "success" else 503)
        if gate.status != "success":
            response["Retry-After"] = "10"
        return response


class StatusSerializer(serializers.Serializer):
    status = serializers.CharField()
    specs = serializers.DictField(child=serializers.CharField())


class StatusView(APIView):
    """The system roll-up and the overall status of every spec."""

    permission_classes = [CanViewHealth]

    @extend_schema(responses={200: StatusSerializer})
    def get(self, request):
        overview = health_spec_overview()
        return Response({"status": health_system_status(overview),
                         "specs": {name: status for name, (_, status) in overview.items()}})


class SpecPermission(permissions.BasePermission):
    """view to read; add or change to PUT (create or replace); delete to DELETE."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if request.method in permissions.SAFE_METHODS:
            return user.has_perm("health.view_healthspec")
        if request.method == "PUT":
            return user.has_perm("health.add_healthspec") and user.has_perm("health.change_healthspec")
        return user.has_perm("health.delete_healthspec")


class CheckSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    status = serializers.SerializerMethodField()
    interval_s = serializers.FloatField()
    timeout_s = serializers.FloatField()
    last_duration_ms = serializers.FloatField(allow_null=True)
    last_run_at = serializers.DateTimeField(allow_null=True)

    def get_status(self, check) -> str:
        return health_check_status(check)


class SpecSerializer(serializers.Serializer):
    name = serializers.CharField()
    enabled = serializers.BooleanField()
    status = serializers.SerializerMethodField()
    managed_by = serializers.CharField()
    source = serializers.CharField()
    source_format = serializers.CharField()
    updated_at = serializers.DateTimeField()
    checks = CheckSerializer(many=True)

    def get_status(self, spec) -> str:
        return health_spec_status(spec)


class SpecApplySerializer(serializers.Serializer):
    document = serializers.JSONField(help_text="The spec: YAML/JSON text, or a JSON object.")
    enabled = serializers.BooleanField(required=False)

    def validate_document(self, value):
        if not isinstance(value, str | dict):
            raise serializers.ValidationError("Send the document as text (YAML or JSON) or as an object.")
        return value


class SpecListView(APIView):
    permission_classes = [SpecPermission]
    pagination_class = DefaultPagination  # read by the schema: the list is documented as paginated

    @extend_schema(responses={200: SpecSerializer(many=True)})
    def get(self, request):
        paginator = DefaultPagination()
        page = paginator.paginate_queryset(health_spec_list(), request, view=self)
        return paginator.get_paginated_response(SpecSerializer(page, many=True).data)


class SpecDetailView(APIView):
    permission_classes = [SpecPermission]

    @extend_schema(responses={200: SpecSerializer})
    def get(self, request, name: str):
        return Response(SpecSerializer(health_spec_get(name=name)).data)

    @extend_schema(request=SpecApplySerializer,
                   responses={200: SpecSerializer, 201: SpecSerializer, 409: ErrorSerializer})
    def put(self, request, name: str):
        body = SpecApplySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        _, action = health_spec_apply(name=name, document=body.validated_data["document"],
                                      enabled=body.validated_data.get("enabled"))
        return Response(SpecSerializer(health_spec_get(name=name)).data,
                        status=201 if action == "created" else 200)

    @extend_schema(responses={204: None, 409: ErrorSerializer})
    def delete(self, request, name: str):
        health_spec_delete(spec=health_spec_get(name=name))
        return Response(status=204)
