"""Health API: the rollout gate, the system roll-up and a read-only list of specs with status.

Gate access: a deploy pipeline sends `Authorization: Bearer $HEALTH_GATE_TOKEN` when that
environment variable is set; otherwise (or in addition) an authenticated user with
`health.view_healthspec` may call it.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.errors import ApplicationError
from apps.health.selectors import health_spec_gate, health_spec_overview, health_system_status
from apps.health.views import bearer_token_matches, configured_token


class CanViewHealth(permissions.BasePermission):
    def has_permission(self, request, view) -> bool:
        token = configured_token("HEALTH_GATE_TOKEN")
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
                   responses={200: GateSerializer, 503: GateSerializer})
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
