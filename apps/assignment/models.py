"""Agents with their presence, capacity and skills: the supply side of assignment."""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models


class Presence(models.TextChoices):
    OFFLINE = "offline", "Offline"
    AVAILABLE = "available", "Available"
    AWAY = "away", "Away"
    BUSY = "busy", "Busy"


class Agent(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="agent")
    display_name = models.CharField(max_length=150)
    skills = ArrayField(models.CharField(max_length=50), default=list, blank=True)
    # Most cases an agent works at once; assignment never exceeds it.
    capacity = models.PositiveSmallIntegerField(default=3)
    presence = models.CharField(max_length=16, choices=Presence.choices, default=Presence.OFFLINE)
    presence_changed_at = models.DateTimeField(null=True, blank=True)
    # Queues the agent works; assignment only offers cases of these queues.
    queues = models.ManyToManyField("cases.Queue", blank=True, related_name="agents")

    class Meta:
        ordering = ["display_name"]
        # Agents set their own presence and nothing else; change_agent (every field of every
        # agent) is for ops. The admin applies it per object (apps.assignment.admin).
        permissions = [("change_own_presence", "Can change their own presence")]
        constraints = [
            models.CheckConstraint(condition=models.Q(capacity__lte=100), name="agent_capacity_sane"),
        ]
        indexes = [
            models.Index(fields=["presence"], name="agent_presence_idx",
                         condition=models.Q(presence="available")),
        ]

    def __str__(self) -> str:
        return self.display_name
