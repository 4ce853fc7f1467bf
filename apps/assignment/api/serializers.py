"""Serializers of the agent API: the calling agent, their offers, and the case they pulled."""

from rest_framework import serializers

from apps.assignment.models import Agent, Offer, Presence


class AgentQueueLinkSerializer(serializers.Serializer):
    queue = serializers.CharField(source="queue.slug")
    priority = serializers.IntegerField()


class AgentMeSerializer(serializers.ModelSerializer):
    queues = AgentQueueLinkSerializer(source="queue_links", many=True, read_only=True)
    load = serializers.IntegerField(read_only=True, help_text="Capacity units held by open cases.")

    class Meta:
        model = Agent
        fields = ["id", "display_name", "presence", "presence_changed_at", "heartbeat_at", "capacity", "load",
                  "skills", "queues"]
        read_only_fields = fields


class PresenceSerializer(serializers.Serializer):
    presence = serializers.ChoiceField(choices=Presence.choices)


class OfferSerializer(serializers.ModelSerializer):
    case = serializers.UUIDField(source="case_id", read_only=True)
    subject = serializers.CharField(source="case.subject", read_only=True)
    queue = serializers.CharField(source="case.queue.slug", read_only=True)
    priority = serializers.IntegerField(source="case.priority", read_only=True)
    channel = serializers.CharField(source="case.channel", read_only=True)

    class Meta:
        model = Offer
        fields = ["id", "case", "subject", "queue", "priority", "channel", "state", "weight", "created_at",
                  "expires_at", "responded_at"]
        read_only_fields = fields


class PulledCaseSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    subject = serializers.CharField()
    queue = serializers.CharField(source="queue.slug")
    status = serializers.CharField()
    priority = serializers.IntegerField()
    channel = serializers.CharField()
    created_at = serializers.DateTimeField()
