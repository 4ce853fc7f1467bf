"""Serializers of the cases API: shapes only; writes go through apps.cases.services."""

from __future__ import annotations

from rest_framework import serializers

from apps.cases.models import Case, CaseEvent, Channel, Priority, Queue, Status
from apps.core.api.rows import SerializerRows
from apps.core.input import JSONDocumentError, json_document_load


class JSONDocumentField(serializers.JSONField):
    """JSONField whose text form (a form or multipart field) is read under the API's document rules,
    as a JSON body is by the parser: DRF's own json.loads would let NaN, 1e999 and any depth through."""

    def to_internal_value(self, data):
        if not (self.binary or getattr(data, "is_json_string", False)):
            return super().to_internal_value(data)
        try:
            return json_document_load(data)
        except JSONDocumentError as exc:
            raise serializers.ValidationError(
                [message if path == "non_field_errors" else f"{path}: {message}"
                 for path, messages in exc.errors.items() for message in messages]
            ) from None


class CaseEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor.username", default=None, read_only=True, allow_null=True,
                                  help_text="Null for events of the system (no user).")

    class Meta:
        model = CaseEvent
        fields = ["id", "kind", "actor", "data", "created_at"]


class CaseSerializer(serializers.ModelSerializer):
    queue = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    assigned_agent_name = serializers.CharField(source="assigned_agent.display_name", default=None,
                                                read_only=True, allow_null=True)

    class Meta:
        model = Case
        fields = ["id", "queue", "status", "priority", "channel", "source", "subject", "merchant_ref",
                  "customer_ref", "delivery_ref", "signal_type", "assigned_agent", "assigned_agent_name",
                  "fields", "location", "legacy_id", "created_at", "updated_at", "first_assigned_at",
                  "first_response_at", "resolved_at"]
        read_only_fields = fields


# The case list's pages, shaped by CaseSerializer from plain rows (see apps.core.api.rows).
CaseRows = SerializerRows(CaseSerializer)


class CaseDetailSerializer(CaseSerializer):
    timeline = CaseEventSerializer(source="events", many=True, read_only=True)
    routing_decision = serializers.JSONField(
        read_only=True, allow_null=True,
        help_text="The assignment engine's latest decision for this case: agents removed per rule, top "
                  "candidates with scores, the winner and the strategy (null before the engine saw it).",
    )

    class Meta(CaseSerializer.Meta):
        fields = [*CaseSerializer.Meta.fields, "routing_decision", "timeline"]
        read_only_fields = fields


class CaseCreateSerializer(serializers.Serializer):
    queue = serializers.SlugRelatedField(slug_field="slug", queryset=Queue.objects.filter(is_active=True))
    fields = JSONDocumentField(required=False, default=dict,
                               help_text="Dynamic fields, validated against the queue's JSON Schema.")
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.NORMAL)
    channel = serializers.ChoiceField(choices=Channel.choices, default=Channel.WEB)
    subject = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)
    merchant_ref = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    customer_ref = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    delivery_ref = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)


class CaseTransitionSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=Status.choices)
    note = serializers.CharField(required=False, default="", allow_blank=True)


class SignalSerializer(serializers.Serializer):
    signal_type = serializers.SlugField(max_length=64, help_text="e.g. late_delivery, missing_items")
    delivery_id = serializers.CharField(max_length=64)
    merchant_id = serializers.CharField(max_length=64, required=False, default="", allow_blank=True,
                                        help_text="The merchant's external id.")
    customer_id = serializers.CharField(max_length=64, required=False, default="", allow_blank=True)
    payload = serializers.DictField(required=False, default=dict,
                                    help_text="Signal details; targeting conditions read them.")


class SignalResultSerializer(serializers.Serializer):
    targeted = serializers.BooleanField(help_text="A queue's targeting rules took the signal.")
    created = serializers.BooleanField(help_text="False when this (delivery, signal type) was seen before.")
    queue = serializers.CharField(allow_null=True)
    experiment = serializers.CharField(allow_blank=True)
    group = serializers.CharField(allow_null=True, help_text="treatment, control or none")
    case_id = serializers.UUIDField(allow_null=True, help_text="Null for control (no outreach).")


class CaseNoteSerializer(serializers.Serializer):
    body = serializers.CharField()


class LegacyTransferSerializer(serializers.Serializer):
    direction = serializers.ChoiceField(choices=[("out", "to the legacy CRM"), ("in", "back to Casehub")])
    legacy_ref = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
    reason = serializers.CharField(required=False, default="", allow_blank=True)
