"""Agents with their presence, capacity, skills and queues (with a priority per queue): the
supply side of assignment."""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import BrinIndex
from django.db import models
from django.db.models import Q

from apps.cases.models import Channel

# The channel weights document, as the queue configs' routing.channel_weights: known channels to
# whole units from 1 to 100 (apps.cases.services.queue_configs states it for configs).
_CHANNELS = "|".join(Channel.values)
_WEIGHTS_PATH = ('$.type() == "object" && !exists($.keyvalue() ? (!(@.key like_regex "^(' + _CHANNELS + ')$")'
                 ' || @.value.type() != "number" || @.value < 1 || @.value > 100'
                 ' || @.value.floor() != @.value))')


def _weights_valid() -> models.Func:
    return models.Func(models.F("channel_weights"), models.Value(_WEIGHTS_PATH), function="jsonb_path_match",
                       template="%(function)s(%(expressions)s::jsonpath)", output_field=models.BooleanField())


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
    # Most capacity units an agent works at once (a case weighs its queue's channel weight, or the
    # agent's own below); assignment never exceeds it (a database trigger on cases_case holds it
    # for every writer).
    capacity = models.PositiveSmallIntegerField(default=3)
    # The agent's own weights by channel, over every queue's: {"chat": 3} for someone new to chat.
    # Whole numbers 1-100 per known channel, as in a queue's routing (the constraint below; forms
    # and the CSV read them with apps.assignment.services.channel_weights_parse).
    channel_weights = models.JSONField(default=dict, blank=True)
    presence = models.CharField(max_length=16, choices=Presence.choices, default=Presence.OFFLINE)
    presence_changed_at = models.DateTimeField(null=True, blank=True)
    # The agent's client sends heartbeats; an available agent whose last one is older than
    # ASSIGNMENT_HEARTBEAT_TTL_SECONDS counts as offline (and a beat job flips the presence).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Queues the agent works; assignment only offers cases of these queues.
    queues = models.ManyToManyField("cases.Queue", blank=True, related_name="agents", through="AgentQueue")

    class Meta:
        ordering = ["display_name"]
        # Agents set their own presence and nothing else; change_agent (every field of every
        # agent) is for ops. The admin applies it per object (apps.assignment.admin).
        permissions = [("change_own_presence", "Can change their own presence"),
                       # Not a view_* permission, so agents (who see agents) do not get it.
                       ("see_assignment_board", "Can see the assignment board")]
        constraints = [
            models.CheckConstraint(condition=models.Q(capacity__lte=100), name="agent_capacity_sane"),
            models.CheckConstraint(condition=models.Q(_weights_valid()), name="agent_channel_weights_valid"),
        ]
        indexes = [
            models.Index(fields=["presence"], name="agent_presence_idx",
                         condition=models.Q(presence="available")),
        ]

    def __str__(self) -> str:
        return self.display_name


class AgentPresenceChange(models.Model):
    """One presence change of an agent, append-only: the history the routing what-if replays
    (apps.assignment.whatif). Rows older than 30 days are purged."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by the (agent, changed_at) index below, not one index of its own.
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="presence_changes",
                              db_index=False)
    presence = models.CharField(max_length=16, choices=Presence.choices)
    changed_at = models.DateTimeField()

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [
            # The what-if reads a window of changes, and the purge deletes by age.
            models.Index(fields=["changed_at"], name="presencechange_changed_idx"),
            # An agent's state at a time: its last change before it.
            models.Index(fields=["agent", "changed_at"], name="presencechange_agent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} {self.presence} at {self.changed_at:%Y-%m-%d %H:%M:%S}"


class AgentQueue(models.Model):
    """An agent works a queue at a priority: 1 first, then 2 once no first-priority agent can."""

    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="queue_links")
    queue = models.ForeignKey("cases.Queue", on_delete=models.CASCADE, related_name="agent_links")
    priority = models.PositiveSmallIntegerField(default=1)

    class Meta:
        # The table of the many-to-many it replaced, rows kept.
        db_table = "assignment_agent_queues"
        unique_together = [("agent", "queue")]
        constraints = [
            models.CheckConstraint(condition=models.Q(priority__gte=1, priority__lte=9),
                                   name="agentqueue_priority_range"),
        ]

    def __str__(self) -> str:
        return f"{self.agent_id} -> {self.queue_id} (p{self.priority})"


class RosterVersion(models.Model):
    """One row whose `version` changes whenever what the engine keeps of agents between batches
    changes: an agent added or removed, their skills, capacity or channel weights, their queue
    links. Triggers on `assignment_agent` and `assignment_agent_queues` set a new random value in
    the writing transaction itself (migration 0013), so a worker whose copy carries the version it
    reads is current. Random, not a counter: a rolled-back change can never bring back a value a
    worker has seen. Presence and heartbeats are read on every batch and do not change it."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    version = models.UUIDField()

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(id=1), name="rosterversion_one_row")]

    def __str__(self) -> str:
        return str(self.version)


class OfferState(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"
    EXPIRED = "expired", "Expired"
    # The case left the agent another way while offered (unassigned, transferred, closed).
    WITHDRAWN = "withdrawn", "Withdrawn"


class Offer(models.Model):
    """A case offered to an agent: while pending the case is held by the agent (its capacity
    counted) until accepted, declined or expired; a declining or silent agent is not offered
    the same case again."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by the composite indexes below (their leading columns), not one index each.
    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="offers", db_index=False)
    agent = models.ForeignKey(Agent, on_delete=models.CASCADE, related_name="offers", db_index=False)
    state = models.CharField(max_length=16, choices=OfferState.choices, default=OfferState.PENDING)
    weight = models.PositiveSmallIntegerField(default=1)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    responded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["case"], condition=Q(state="pending"),
                                    name="offer_one_pending_per_case"),
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("created_at")),
                                   name="offer_expires_after_created"),
            models.CheckConstraint(condition=Q(state="pending") | Q(responded_at__isnull=False),
                                   name="offer_answered_has_time"),
        ]
        indexes = [
            # The expiry job's scan, and an agent's pending offers.
            models.Index(fields=["expires_at"], name="offer_pending_expiry_idx",
                         condition=Q(state="pending")),
            models.Index(fields=["agent", "expires_at"], name="offer_agent_pending_idx",
                         condition=Q(state="pending")),
            # Who passed on a case (the engine's claim), and a case's offers.
            models.Index(fields=["case", "agent"], name="offer_case_agent_idx"),
            # The offers metrics read a recent window of an append-mostly table: a BRIN index
            # costs next to nothing per insert.
            BrinIndex(fields=["created_at"], name="offer_created_brin"),
        ]

    def __str__(self) -> str:
        return f"offer {self.pk} of {self.case_id} to {self.agent_id} ({self.state})"


class Call(models.Model):
    """A softphone call an agent answered: the case it popped, and its end. One row per call id,
    so a replayed webhook finds the first answer instead of writing a second one."""

    call_id = models.CharField(max_length=128, unique=True)
    # E.164 ("+4930123456"), or blank when the caller withheld the number.
    caller = models.CharField(max_length=16, blank=True)
    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="calls")
    agent = models.ForeignKey(Agent, null=True, on_delete=models.SET_NULL, related_name="calls")
    # The call opened the case (no open case of the caller was found).
    created_case = models.BooleanField(default=False)
    answered_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-answered_at"]
        constraints = [
            models.CheckConstraint(condition=Q(ended_at__isnull=False) | Q(duration_seconds__isnull=True),
                                   name="call_duration_only_when_ended"),
        ]

    def __str__(self) -> str:
        return f"call {self.call_id} on {self.case_id}"
