"""Support metrics' tables (apps.cases.metric_definitions says what each number means;
apps.cases.services.metric_rollups keeps them): per-case facts and per-day rollups."""

from __future__ import annotations

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models import Q


def _no_offer_waits() -> list[int]:
    from apps.cases.metric_definitions import OFFER_WAIT_BUCKETS

    return [0] * (len(OFFER_WAIT_BUCKETS) + 1)


class CaseMetricFacts(models.Model):
    """One case's metric facts, recomputed from its events whenever one arrives, with the
    contribution it last added to the day rollups: the next change applies new minus old."""

    case = models.OneToOneField("cases.Case", primary_key=True, on_delete=models.CASCADE, related_name="+")
    # Queue and agent as history: no constraint, so removing an agent never rewrites old facts.
    queue = models.ForeignKey("cases.Queue", on_delete=models.DO_NOTHING, related_name="+",
                              db_constraint=False)
    agent = models.ForeignKey("assignment.Agent", null=True, blank=True, on_delete=models.DO_NOTHING,
                              related_name="+", db_constraint=False)
    customer_ref = models.CharField(max_length=64, blank=True)
    delivery_ref = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField()
    first_offer_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    first_response_at = models.DateTimeField(null=True, blank=True)
    first_resolved_at = models.DateTimeField(null=True, blank=True)
    reopened_at = models.DateTimeField(null=True, blank=True)
    followup_at = models.DateTimeField(null=True, blank=True)
    handle_seconds = models.FloatField(null=True, blank=True)
    agent_contacts = models.PositiveIntegerField(default=0)
    manual_actions = models.PositiveIntegerField(default=0)
    offers_expired = models.PositiveIntegerField(default=0)
    first_response_target = models.PositiveIntegerField(null=True, blank=True)
    resolution_target = models.PositiveIntegerField(null=True, blank=True)
    # DWR / FCR: null while the window after the first resolution is open and nothing decided it.
    dwr = models.BooleanField(null=True)
    fcr = models.BooleanField(null=True)
    settles_at = models.DateTimeField(null=True, blank=True)
    # [[day, queue id, agent id, {counter: value}], ...] as last applied to the rollups.
    contribution = models.JSONField(default=list)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "case metric facts"
        indexes = [
            # The settle step: resolved cases whose window has passed with DWR or FCR undecided.
            models.Index(fields=["settles_at"], name="metricfacts_unsettled_idx",
                         condition=Q(settles_at__isnull=False) & (Q(dwr__isnull=True) | Q(fcr__isnull=True))),
        ]

    def __str__(self) -> str:
        return f"metric facts of {self.case_id}"


class MetricCounters(models.Model):
    """Additive counters of one rollup row (see apps.cases.metric_definitions.COUNTERS)."""

    day = models.DateField()
    queue = models.ForeignKey("cases.Queue", on_delete=models.CASCADE, related_name="+")
    created = models.IntegerField(default=0)
    first_offer_n = models.IntegerField(default=0)
    first_offer_seconds = models.FloatField(default=0.0)
    first_response_n = models.IntegerField(default=0)
    first_response_seconds = models.FloatField(default=0.0)
    first_response_breached = models.IntegerField(default=0)
    offers_expired = models.IntegerField(default=0)
    offer_wait_buckets = ArrayField(models.IntegerField(), default=_no_offer_waits)
    resolved = models.IntegerField(default=0)
    resolve_seconds = models.FloatField(default=0.0)
    handled = models.IntegerField(default=0)
    handle_seconds = models.FloatField(default=0.0)
    manual_actions = models.IntegerField(default=0)
    dwr_ok = models.IntegerField(default=0)
    dwr_reopened = models.IntegerField(default=0)
    fcr_ok = models.IntegerField(default=0)
    fcr_failed = models.IntegerField(default=0)
    resolution_breached = models.IntegerField(default=0)

    class Meta:
        abstract = True


class MetricRollupQueueDay(MetricCounters):
    """The metrics of one queue on one day, kept by the `metric_rollups` feed consumer."""

    class Meta:
        ordering = ["day", "queue"]
        constraints = [models.UniqueConstraint(fields=["day", "queue"], name="metricrollup_queue_day_unique")]

    def __str__(self) -> str:
        return f"{self.queue_id} on {self.day}"


class MetricRollupAgentDay(MetricCounters):
    """The metrics of one agent's cases in one queue on one day (cases with an agent only)."""

    agent = models.ForeignKey("assignment.Agent", on_delete=models.CASCADE, related_name="+")

    class Meta:
        ordering = ["day", "queue", "agent"]
        constraints = [models.UniqueConstraint(fields=["day", "queue", "agent"],
                                               name="metricrollup_agent_day_unique")]
        indexes = [models.Index(fields=["agent", "day"], name="metricrollup_agent_idx")]

    def __str__(self) -> str:
        return f"{self.agent_id} in {self.queue_id} on {self.day}"
