"""Cases, their queues and versioned queue configuration, the case timeline (CaseEvent, also
the change feed), proactive-signal outcomes and per-case rollups."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.core.validation import json_errors


class Status(models.TextChoices):
    """Every status a queue's transition table may use."""

    NEW = "new", "New"
    ASSIGNED = "assigned", "Assigned"
    IN_PROGRESS = "in_progress", "In progress"
    PENDING_CUSTOMER = "pending_customer", "Pending customer"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"
    REOPENED = "reopened", "Reopened"


OPEN_STATUSES = (Status.NEW, Status.ASSIGNED, Status.IN_PROGRESS, Status.PENDING_CUSTOMER, Status.REOPENED)
# A case waits for an agent while it is open, unassigned and worked here, whatever status its
# queue starts in (a queue may start in 'in_progress') and also once reopened without an agent.
WAITING = Q(assigned_agent__isnull=True, status__in=OPEN_STATUSES, location="casehub")


class Channel(models.TextChoices):
    CHAT = "chat", "Chat"
    PHONE = "phone", "Phone"
    EMAIL = "email", "Email"
    PROACTIVE = "proactive", "Proactive"
    FRAUD_REVIEW = "fraud_review", "Fraud review"
    WEB = "web", "Web form"


class Priority(models.IntegerChoices):
    LOW = 1, "Low"
    NORMAL = 2, "Normal"
    HIGH = 3, "High"
    URGENT = 4, "Urgent"


class Source(models.TextChoices):
    AGENT = "agent", "Agent"
    API = "api", "API"
    SIGNAL = "signal", "Proactive signal"
    EMAIL = "email", "Inbound email"
    HUB = "hub", "Support Hub"
    LEGACY_IMPORT = "legacy_import", "Legacy import"
    DEMO = "demo", "Demo data"


class Location(models.TextChoices):
    """Where a case is worked: here, or handed to the legacy CRM (reversible)."""

    CASEHUB = "casehub", "Casehub"
    LEGACY = "legacy", "Legacy CRM"


class Queue(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ConfigState(models.TextChoices):
    DRAFT = "draft", "Draft"
    PUBLISHED = "published", "Published"


class QueueConfig(models.Model):
    """One version of a queue's rules. A published version is never edited: changes make a new
    version, and only a published one can be active. A draft may be saved again in place until
    it is published (apps.cases.services.config_versions)."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="configs")
    version = models.PositiveIntegerField()
    is_active = models.BooleanField(default=False)
    state = models.CharField(max_length=16, choices=ConfigState.choices, default=ConfigState.PUBLISHED)
    comment = models.TextField(blank=True)
    # The active version a draft started from: publishing over a newer one asks for a rebase.
    based_on = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # JSON Schema (draft 2020-12) of the queue's dynamic `Case.fields`.
    fields_schema = models.JSONField(default=dict, blank=True)
    initial_status = models.CharField(max_length=32, choices=Status.choices, default=Status.NEW)
    # {"new": ["assigned", "resolved"], ...}: from-status -> allowed to-statuses.
    transitions = models.JSONField(default=dict)
    # {"first_response_minutes": 60, "resolution_minutes": 1440}
    sla = models.JSONField(default=dict, blank=True)
    # Used by assignment: {"skills": ["refunds"], "priority_weights": {"4": 10, "1": 1}}
    routing = models.JSONField(default=dict, blank=True)
    # Proactive signals: {"signal_types": ["late_delivery"], "conditions": [{"path": "minutes_late",
    #  "op": "gte", "value": 30}], "priority": 3, "experiment": {"name": "...", "treatment_percent": 50}}
    targeting = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    published_at = models.DateTimeField(null=True, blank=True)
    published_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["queue", "-version"]
        # Editors save drafts (add/change); publishing is a permission of its own (ops).
        permissions = [("publish_queueconfig", "Can publish queue config versions")]
        constraints = [
            models.UniqueConstraint(fields=["queue", "version"], name="queueconfig_unique_version"),
            # At most one active version per queue, enforced by a partial unique index.
            models.UniqueConstraint(fields=["queue"], condition=Q(is_active=True),
                                    name="queueconfig_one_active_per_queue"),
            models.CheckConstraint(condition=Q(is_active=False) | Q(state=ConfigState.PUBLISHED),
                                   name="queueconfig_active_is_published"),
            models.CheckConstraint(
                condition=Q(state=ConfigState.DRAFT, published_at__isnull=True)
                | Q(state=ConfigState.PUBLISHED, published_at__isnull=False),
                name="queueconfig_published_has_time"),
        ]

    def __str__(self) -> str:
        suffix = " (active)" if self.is_active else (" (draft)" if self.state == ConfigState.DRAFT else "")
        return f"{self.queue.slug} v{self.version}{suffix}"


class Case(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The queue and agent columns are indexed only by the (queue, status) and (agent, status)
    # indexes, which serve lookups by either alone: every assignment rewrites each index of the
    # row (it changes indexed columns), so an index it does not need is paid on every case.
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="cases", db_index=False)
    status = models.CharField(max_length=32, choices=Status.choices, default=Status.NEW)
    priority = models.PositiveSmallIntegerField(choices=Priority.choices, default=Priority.NORMAL)
    channel = models.CharField(max_length=32, choices=Channel.choices, default=Channel.WEB)
    source = models.CharField(max_length=32, choices=Source.choices, default=Source.AGENT)
    subject = models.CharField(max_length=300, blank=True)
    # Outside entities by identifier, never copies of their data.
    merchant_ref = models.CharField(max_length=64, blank=True,
                                    help_text="merchants.Merchant.external_id")
    customer_ref = models.CharField(max_length=64, blank=True)
    delivery_ref = models.CharField(max_length=64, blank=True)
    signal_type = models.CharField(max_length=64, blank=True)
    assigned_agent = models.ForeignKey("assignment.Agent", null=True, blank=True, db_index=False,
                                       on_delete=models.SET_NULL, related_name="cases")
    fields = models.JSONField(default=dict, blank=True)
    location = models.CharField(max_length=16, choices=Location.choices, default=Location.CASEHUB)
    # Unique by a constraint (below), not unique=True: that adds a second, LIKE-prefix index
    # that no query uses (legacy ids are looked up whole).
    legacy_id = models.CharField(max_length=100, null=True, blank=True)
    # A default, not auto_now_add: imports keep the legacy CRM's creation time.
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    first_assigned_at = models.DateTimeField(null=True, blank=True)
    first_response_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    # Capacity units the case takes from its agent (the queue's channel weight when assigned, 0
    # unassigned); a database trigger refuses an assignment that exceeds the agent's capacity.
    assigned_weight = models.PositiveSmallIntegerField(default=0, db_default=0)
    # The assignment engine's latest decision on the case (apps.assignment.routing.Decision).
    routing_decision = models.JSONField(null=True, blank=True, editable=False)
    # A waiting case no agent could take is not claimed again before this time.
    routing_retry_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The queue config version the case's fields were last validated against (null: before
    # versions were recorded).
    config_version = models.PositiveIntegerField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("ingest_signal", "Can send proactive delivery signals")]
        indexes = [
            GinIndex(fields=["fields"], name="case_fields_gin", opclasses=["jsonb_path_ops"]),
            models.Index(fields=["queue", "status"], name="case_queue_status_idx"),
            models.Index(fields=["assigned_agent", "status"], name="case_agent_status_idx"),
            models.Index(fields=["delivery_ref"], name="case_delivery_idx", condition=~Q(delivery_ref="")),
            # A merchant's cases, newest first: the Support Hub's case list (and any lookup by
            # merchant, by its leading column).
            models.Index(fields=["merchant_ref", "-created_at"], name="case_merchant_recent_idx"),
            # A caller's newest case (the softphone's screen pop), a customer's cases.
            models.Index(fields=["customer_ref", "-created_at"], name="case_customer_recent_idx"),
            # The wait-to-first-offer histogram reads a recent window of first assignments.
            models.Index(fields=["first_assigned_at"], name="case_first_assigned_idx",
                         condition=Q(first_assigned_at__isnull=False)),
            # Waiting cases, most urgent first then oldest: the order the assignment engine claims.
            models.Index(fields=["-priority", "created_at"], name="case_waiting_idx", condition=WAITING),
        ]
        constraints = [
            # Only legacy cases have an id there: the others (most) add nothing to the index.
            models.UniqueConstraint(fields=["legacy_id"], condition=models.Q(legacy_id__isnull=False),
                                    name="case_legacy_id_unique"),
            # One proactive case per delivery and signal type, whatever the retries.
            models.UniqueConstraint(fields=["delivery_ref", "signal_type"],
                                    name="case_one_per_delivery_signal", condition=~Q(signal_type="")),
            models.CheckConstraint(condition=Q(priority__gte=1, priority__lte=4), name="case_priority_range"),
            models.CheckConstraint(condition=Q(status__in=Status.values), name="case_status_known"),
        ]

    def __str__(self) -> str:
        return self.subject or str(self.id)


# The rules of a case's core attributes, as JSON Schema: the one place they are decided. Case
# writes, the legacy import and queue configs (targeting, initial status, transitions) all
# validate through these, so each rule has one message.
STATUS_SCHEMA = {"enum": Status.values, "x-message": "Unknown status '{value}'."}
PRIORITY_SCHEMA = {"type": "integer", "enum": Priority.values,
                   "x-message": f"An integer from {min(Priority.values)} to {max(Priority.values)}."}
CHANNEL_SCHEMA = {"type": "string", "enum": Channel.values,
                  "x-message": f"Unknown channel '{{value}}'; one of {', '.join(Channel.values)}."}
_TEXT_LIMITS = {name: Case._meta.get_field(name).max_length
                for name in ("subject", "merchant_ref", "customer_ref", "delivery_ref")}
CASE_CORE_SCHEMA = {"type": "object", "properties": {
    "status": STATUS_SCHEMA, "priority": PRIORITY_SCHEMA, "channel": CHANNEL_SCHEMA,
    **{name: {"type": "string", "maxLength": limit, "x-message": f"Text of at most {limit} characters."}
       for name, limit in _TEXT_LIMITS.items()},
}}
# What a user may change on a case directly; status, queue, agent and location have their own
# actions (transition, transfer, assign, legacy transfer), each with its own rules and events.
CORE_EDITABLE = ("subject", "priority", "channel", "merchant_ref", "customer_ref", "delivery_ref")


def case_core_errors(**values: object) -> dict[str, list[str]]:
    """Problems with the given core attributes (status, priority, channel, subject, refs), by name;
    other names are ignored."""
    return json_errors(values, CASE_CORE_SCHEMA, own_messages=True)


class EventKind(models.TextChoices):
    CREATED = "created", "Created"
    FIELD_CHANGED = "field_changed", "Field changed"
    STATUS_CHANGED = "status_changed", "Status changed"
    ASSIGNED = "assigned", "Assigned"
    # An offer holds the case (and the agent's capacity) until accepted, declined or expired.
    OFFERED = "offered", "Offered"
    OFFER_ACCEPTED = "offer_accepted", "Offer accepted"
    OFFER_DECLINED = "offer_declined", "Offer declined"
    OFFER_EXPIRED = "offer_expired", "Offer expired"
    NOTE = "note", "Note"
    MESSAGE = "message", "Message"
    TRANSFERRED = "transferred", "Transferred to queue"
    LEGACY_TRANSFER = "legacy_transfer", "Legacy transfer"


class CaseEvent(models.Model):
    """Append-only timeline row; its id is the change-feed position (see apps.core.feed)."""

    id = models.BigAutoField(primary_key=True)
    # Indexed by (case, id) below, which serves lookups by case alone: events are written in
    # hundreds per assignment batch, each paying for every index.
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="events", db_index=False)
    kind = models.CharField(max_length=32, choices=EventKind.choices)
    # Indexed only where set (below): most events are the system's (the engine's hundreds a batch).
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+", db_index=False)
    # kind-specific: {"field": ..., "old": ..., "new": ...}, {"from": ..., "to": ...}, {"body": ...}
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["case", "id"], name="caseevent_case_idx"),
                   models.Index(fields=["actor"], condition=models.Q(actor__isnull=False),
                                name="caseevent_actor_idx")]

    def __str__(self) -> str:
        return f"{self.kind} #{self.id}"


class ExperimentGroup(models.TextChoices):
    TREATMENT = "treatment", "Treatment (outreach)"
    CONTROL = "control", "Control (no outreach)"
    NONE = "none", "No experiment"


class SignalOutcome(models.Model):
    """What one (delivery, signal type) led to: the dedup key and the experiment record."""

    delivery_ref = models.CharField(max_length=64)
    signal_type = models.CharField(max_length=64)
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="signal_outcomes")
    experiment = models.CharField(max_length=100, blank=True)
    group = models.CharField(max_length=16, choices=ExperimentGroup.choices)
    case = models.OneToOneField(Case, null=True, blank=True, on_delete=models.SET_NULL,
                                related_name="signal_outcome")
    payload = models.JSONField(default=dict, blank=True)
    received_count = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["delivery_ref", "signal_type"], name="signaloutcome_unique"),
            # Control never gets a case; treatment (and no-experiment) always does.
            models.CheckConstraint(condition=~Q(group="control") | Q(case__isnull=True),
                                   name="signaloutcome_control_has_no_case"),
        ]

    def __str__(self) -> str:
        return f"{self.signal_type}:{self.delivery_ref} ({self.group})"


class CaseStats(models.Model):
    """Per-case rollup maintained by the `case_metrics` feed consumer."""

    case = models.OneToOneField(Case, primary_key=True, on_delete=models.CASCADE, related_name="stats")
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="+")
    outbound_messages = models.PositiveIntegerField(default=0)
    reopen_count = models.PositiveIntegerField(default=0)
    first_response_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    handle_seconds = models.FloatField(null=True, blank=True)
    # Resolved on the first contact: one agent reply at most and never reopened.
    first_contact_resolution = models.BooleanField(null=True)
    # The newest event folded in: an event fed again (a re-run batch, a reset cursor) is skipped,
    # so the consumer is idempotent on its own, not only through its cursor.
    last_event_id = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "case stats"

    def __str__(self) -> str:
        return f"stats of {self.case_id}"


class MessageDirection(models.TextChoices):
    INBOUND = "inbound", "Inbound"  # from the customer or merchant
    OUTBOUND = "outbound", "Outbound"  # from an agent


class MessageSource(models.TextChoices):
    EMAIL = "email", "Email"  # arrived through the inbound email endpoint
    HUB = "hub", "Support Hub"  # a merchant user wrote it in the hub
    AGENT = "agent", "Agent"  # an agent wrote it (sent out by email when the case has an address)


class DeliveryStatus(models.TextChoices):
    """How an agent's reply by email is doing; messages that are not sent by email have none."""

    NONE = "", "Not emailed"
    PENDING = "pending", "Pending"  # queued or being retried (see delivery_attempts/error)
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"  # gave up after the last retry


class Message(models.Model):
    """One email or hub message of a case: the single store of a case's conversation, written
    only through apps.cases.services.messages (which also adds its timeline event)."""

    id = models.BigAutoField(primary_key=True)
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="messages")
    direction = models.CharField(max_length=16, choices=MessageDirection.choices)
    source = models.CharField(max_length=16, choices=MessageSource.choices)
    sender_user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    sender_address = models.CharField(max_length=320, blank=True)
    sender_name = models.CharField(max_length=200, blank=True)
    to_addresses = ArrayField(models.CharField(max_length=320), default=list, blank=True)
    cc_addresses = ArrayField(models.CharField(max_length=320), default=list, blank=True)
    subject = models.CharField(max_length=998, blank=True)
    # RFC 5322 threading headers, ids without angle brackets.
    message_id = models.CharField(max_length=998, blank=True)
    in_reply_to = models.CharField(max_length=998, blank=True)
    references = ArrayField(models.CharField(max_length=998), default=list, blank=True)
    text_body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    # Extracted once when stored, so reading a thread never parses mail.
    latest_reply_text = models.TextField(blank=True)
    latest_reply_html = models.TextField(blank=True)
    has_quoted_history = models.BooleanField(default=False)
    # Internal agent messages stay out of the merchant's view.
    merchant_visible = models.BooleanField(default=True)
    is_auto_reply = models.BooleanField(default=False)
    is_bounce = models.BooleanField(default=False)
    sent_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    # Attachments refused by the upload rules: [{"filename": ..., "reason": ...}], shown in the thread.
    dropped_attachments = models.JSONField(default=list, blank=True)
    # Outbound email delivery, written by the send task only.
    delivery_status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default="", blank=True)
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    delivery_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    # When the pending send is due (now, or after a retry's backoff): the requeue job sends mail
    # still pending well past it, whose task never reached a worker.
    delivery_due_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            # A mail delivered twice (provider retries, two inbound routes) is stored once.
            models.UniqueConstraint(fields=["message_id"], condition=~Q(message_id=""),
                                    name="message_unique_message_id"),
            models.CheckConstraint(condition=Q(delivery_status__in=DeliveryStatus.values),
                                   name="message_delivery_status_known"),
            # Only outbound mail is delivered.
            models.CheckConstraint(condition=Q(delivery_status="") | Q(direction="outbound"),
                                   name="message_delivery_outbound_only"),
        ]
        indexes = [
            models.Index(fields=["case", "id"], name="message_case_idx"),
            # Threading by In-Reply-To / References looks ids up among stored messages.
            models.Index(fields=["message_id"], name="message_message_id_idx", condition=~Q(message_id="")),
            # The requeue job's look for mail whose send never reached a worker.
            models.Index(fields=["id"], name="message_delivery_pending_idx",
                         condition=Q(delivery_status="pending")),
        ]

    def __str__(self) -> str:
        return f"{self.direction} message {self.pk} of {self.case_id}"


class Attachment(models.Model):
    """A file of a message, kept in Django storage under a generated name; `filename` is the
    sender's name made safe, `content_type` what sniffing the bytes found."""

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    # Denormalised from the message so access checks scope by case in one join.
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="attachments")
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    file = models.FileField(upload_to="attachments/%Y/%m/", max_length=300)
    content_id = models.CharField(max_length=998, blank=True)  # inline `cid:` images
    inline = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [models.CheckConstraint(condition=Q(size__gt=0), name="attachment_not_empty")]

    def __str__(self) -> str:
        return self.filename


# The support metrics' tables live in a module of their own; Django finds them through this one.
from apps.cases.metric_models import (  # noqa: E402, F401
    CaseMetricFacts,
    MetricCounters,
    MetricRollupAgentDay,
    MetricRollupQueueDay,
)
