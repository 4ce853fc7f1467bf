"""The OpenAPI schema's house rules, declared once: every operation documents the errors it can
answer with (400, 401, 403, 404, 409, 413, 415, 422, 429 where each occurs), in the shapes the
exception handler and the edge middleware send, and API Basic authentication is described."""

from __future__ import annotations

from drf_spectacular.authentication import BasicScheme
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers

from apps.core.idempotency import KEY_HEADER


class ErrorSerializer(serializers.Serializer):
    """Every error answer: `detail` for people; `code` and `errors` (messages by field or dotted path)
    where the answer comes from a rule of ours rather than from DRF itself."""

    detail = serializers.CharField()
    code = serializers.CharField(required=False, help_text="invalid, parse_error, too_large, conflict, ...")
    errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), required=False,
        help_text='Messages by field or dotted path: {"fields.order_id": ["This field is required."]}.',
    )


# A serializer's own validation answers {"<field>": ["message", ...]} (nested for nested fields).
FIELD_ERRORS_SCHEMA = {
    "type": "object",
    "description": "Messages by request field, as serializer validation answers them.",
    "additionalProperties": {"oneOf": [
        {"type": "array", "items": {"type": "string"}},
        {"type": "object", "additionalProperties": {}},
    ]},
}

DESCRIPTIONS = {
    "400": "Invalid input: a field-level message for each value refused.",
    "401": "Not authenticated (HTTP Basic or a session).",
    "403": "Authenticated, but not allowed to do this.",
    "404": "No such object, or not one of yours; also a page number past the last page.",
    "409": "Conflicts with the current state (or an Idempotency-Key still in use).",
    "413": "The request body is larger than the server takes.",
    "415": "The request body's content type is not one this operation reads.",
    "422": "The Idempotency-Key was used before for another request.",
    "429": "Sign-in locked after repeated failures; see Retry-After.",
}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class ApiBasicScheme(BasicScheme):
    target_class = "apps.core.auth.ApiBasicAuthentication"
    priority = 0


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's AutoSchema plus the error answers each operation can give.

    Which errors: 400, 401, 403 and 429 anywhere (every request passes the edge checks,
    authentication and permissions); 404 for a path naming an object or a paginated list;
    413 and 415 with a request body; 409 and 422 with an Idempotency-Key. A view documents
    others it raises (a 404 or 409 from a service) in its own `extend_schema` responses.
    """

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self.error_status_codes():
            if code not in responses:
                responses[code] = self._error_response(code)
        for code, response in responses.items():  # errors a view declares itself (a 404 from a service)
            if code in DESCRIPTIONS and not response.get("description"):
                response["description"] = DESCRIPTIONS[code]
        return dict(sorted(responses.items()))

    def error_status_codes(self) -> list[str]:
        codes = ["400", "401", "403", "429"]
        if "{" in self.path or (self._is_list_view() and self._get_paginator() is not None):
            codes.append("404")
        if self.method in BODY_METHODS:
            codes += ["413", "415"]
        parameters = self.get_override_parameters()
        if any(isinstance(p, OpenApiParameter) and p.name == KEY_HEADER for p in parameters):
            codes += ["409", "422"]
        return codes

    def _error_response(self, code: str) -> dict:
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        schema = error
        if code == "400":
            field_errors = ResolvedComponent(name="FieldErrors", type=ResolvedComponent.SCHEMA,
                                             object="FieldErrors", schema=FIELD_ERRORS_SCHEMA)
            self.registry.register_on_missing(field_errors)
            schema = {"oneOf": [error, field_errors.ref]}
        return {
            "content": {"application/json": {"schema": schema}},
            "description": DESCRIPTIONS[code],
        }
