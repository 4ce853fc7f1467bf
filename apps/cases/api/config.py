"""A queue's config as code (`/api/v1/queues/<slug>/config.yaml`): GET exports the active version
as YAML; PUT saves a YAML document as a draft, or publishes it (`?publish=1`, ops only)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import BasePermission
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.cases import services
from apps.cases.models import Queue
from apps.core.api.schema import ErrorSerializer
from apps.core.errors import InvalidInput, NotFound

PUBLISH = "cases.publish_queueconfig"


class YAMLTextParser(BaseParser):
    """A raw YAML body: handed to the import service as text (it bounds size and aliases)."""

    media_type = "application/yaml"

    def parse(self, stream, media_type=None, parser_context=None):
        raw = stream.read() if stream is not None else b""
        try:
            return {"document": raw.decode("utf-8")}
        except UnicodeDecodeError:
            raise InvalidInput("The body is not UTF-8 text.", errors={"document": ["Not UTF-8 text."]},
                               code="parse_error") from None


class TextYAMLParser(YAMLTextParser):
    media_type = "text/yaml"


class ErrorsAsJSON(DefaultContentNegotiation):
    """Errors are JSON whatever the Accept header says; the export is YAML on its own."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class QueueConfigPermission(BasePermission):
    """Reading needs cases.view_queueconfig; saving a draft cases.add_queueconfig; publishing also
    cases.publish_queueconfig (checked in the view, where `publish` is read)."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return user.has_perm("cases.view_queueconfig" if request.method == "GET" else "cases.add_queueconfig")


class ConfigApplySerializer(serializers.Serializer):
    document = serializers.CharField(
        trim_whitespace=False, max_length=256 * 1024,
        help_text="The YAML (or JSON) document: `slug`, `name` and the config keys (fields_schema, "
                  "initial_status, transitions, sla, routing, targeting).")


class PublishQuerySerializer(serializers.Serializer):
    publish = serializers.BooleanField(required=False, default=False)


class ConfigVersionSerializer(serializers.Serializer):
    queue = serializers.CharField(source="queue.slug")
    version = serializers.IntegerField()
    state = serializers.CharField()
    is_active = serializers.BooleanField()
    comment = serializers.CharField()
    warnings = serializers.DictField(child=serializers.ListField(child=serializers.CharField()),
                                     help_text="Cross-check warnings (and, for a draft, what would "
                                               "refuse publishing), by dotted path.")


class QueueConfigYamlView(APIView):
    permission_classes = [QueueConfigPermission]
    parser_classes = [YAMLTextParser, TextYAMLParser, *APIView.parser_classes]
    content_negotiation_class = ErrorsAsJSON

    @extend_schema(summary="Export a queue's active config as YAML",
                   responses={(200, "application/yaml"): OpenApiTypes.STR, 404: ErrorSerializer})
    def get(self, request, slug: str):
        queue = Queue.objects.filter(slug=slug).first()
        if queue is None:
            raise NotFound(f"No queue '{slug}'.")
        text = services.queue_config_export_yaml(queue)
        return HttpResponse(text, content_type="application/yaml; charset=utf-8")

    @extend_schema(
        summary="Save a queue's config from YAML: a draft, or published with ?publish=1",
        description=("The body is JSON `{\"document\": \"<yaml>\"}`, or the YAML itself as "
                     "`application/yaml`. Publishing needs the publish permission (ops) and a document "
                     "without check errors; a draft needs a document the meta-schema accepts. A missing "
                     "queue is created (with cases.add_queue). Errors name the document's dotted paths."),
        parameters=[OpenApiParameter("publish", OpenApiTypes.BOOL, OpenApiParameter.QUERY, required=False)],
        request={"application/json": ConfigApplySerializer},
        responses={201: ConfigVersionSerializer, 404: ErrorSerializer},
    )
    def put(self, request, slug: str):
        query = PublishQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        publish = query.validated_data["publish"]
        if publish and not request.user.has_perm(PUBLISH):
            self.permission_denied(request, message="Only users who may publish queue configs (ops) publish.")
        body = ConfigApplySerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if not Queue.objects.filter(slug=slug).exists() and not request.user.has_perm("cases.add_queue"):
            raise NotFound(f"No queue '{slug}'.")
        text = body.validated_data["document"]
        config = services.queue_config_import_yaml(text=text, user=request.user, publish=publish, slug=slug)
        return Response(ConfigVersionSerializer(config).data, status=status.HTTP_201_CREATED)
