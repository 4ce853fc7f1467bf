"""Health specs (declarative documents), the checks derived from them, and their last results."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class CheckStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    ERROR = "error", "Error"
    TIMEOUT = "timeout", "Timeout"


# A check whose latest result is one of these makes its spec fail.
FAILING_STATUSES = (CheckStatus.FAILURE, CheckStatus.ERROR, CheckStatus.TIMEOUT)
RESULTS_KEPT = 5


class OverallStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILURE = "failure", "Failure"
    PENDING = "pending", "Pending"


class HealthSpec(models.Model):
    """One declarative document listing named checks; `document` is the validated, normalised form."""

    name = models.CharField(max_length=100, unique=True)
    source = models.TextField(help_text="The document as written (YAML or JSON).")
    source_format = models.CharField(max_length=8, choices=[("yaml", "YAML"), ("json", "JSON")],
                                     default="yaml")
    document = models.JSONField(default=dict, editable=False)
    enabled = models.BooleanField(default=True)
    # The folder `apply_health_specs` synced this spec from; blank when edited in admin or the API.
    managed_by = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=~Q(name=""), name="health_spec_name_not_blank"),
            # Same rule as apps.health.specs.SPEC_NAME_PATTERN (the admission check names the field).
            models.CheckConstraint(condition=Q(name__regex=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"),
                                   name="health_spec_name_plain"),
        ]

    def __str__(self) -> str:
        return self.name


class HealthCheck(models.Model):
    """A check of a spec, kept in sync with the spec document; carries scheduling and scan state."""

    spec = models.ForeignKey(HealthSpec, on_delete=models.CASCADE, related_name="checks")
    name = models.CharField(max_length=63)
    type = models.CharField(max_length=40)
    params = models.JSONField(default=dict)
    interval_s = models.FloatField()
    timeout_s = models.FloatField()
    grace_period_s = models.FloatField(default=0)
    # Incremental state of the check type (e.g. a log file offset); reset when the definition changes.
    state = models.JSONField(default=dict, blank=True)
    # Start of the grace window: creation, or the last change of the check's definition.
    grace_started_at = models.DateTimeField()
    # The next due time on the check's own grid (creation + k * interval): a claim advances it to
    # the first grid point after the claim, so runs never slip by how late a tick picked them up.
    next_run_at = models.DateTimeField(db_index=True)
    # Bumped by every claim (scheduled or "run now"); a result is written only under the claim it
    # ran for, so a late result of an older claim changes nothing.
    claim = models.BigIntegerField(default=0)
    # The host whose runner may run this check (blank: any). Checks reading local files are pinned
    # to the host named in the spec, else to the host where they were declared.
    host = models.CharField(max_length=255, blank=True, default="")
    # Latest result, denormalised so overall status and metrics are one cheap query.
    last_status = models.CharField(max_length=10, choices=CheckStatus.choices, blank=True, default="")
    last_duration_ms = models.FloatField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["spec_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["spec", "name"], name="health_check_unique_name_per_spec"),
            models.CheckConstraint(condition=Q(interval_s__gt=0), name="health_check_interval_positive"),
            models.CheckConstraint(condition=Q(timeout_s__gt=0) & Q(timeout_s__lte=models.F("interval_s")),
                                   name="health_check_timeout_within_interval"),
            models.CheckConstraint(condition=Q(grace_period_s__gte=0),
                                   name="health_check_grace_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.spec_id}:{self.name}"


class CheckResult(models.Model):
    """One run of a check. At most RESULTS_KEPT per check: older ones are pruned on insert."""

    health_check = models.ForeignKey(HealthCheck, on_delete=models.CASCADE, related_name="results")
    status = models.CharField(max_length=10, choices=CheckStatus.choices)
    duration_ms = models.FloatField()
    message = models.TextField(blank=True, default="")
    # A non-success inside the check's grace period: shown, but it does not fail the spec.
    in_grace = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["health_check", "-created_at", "-id"], name="health_result_latest")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=[s.value for s in CheckStatus]),
                                   name="health_result_status_valid"),
            models.CheckConstraint(condition=Q(duration_ms__gte=0),
                                   name="health_result_duration_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.health_check_id} {self.status} @ {self.created_at:%H:%M:%S}"
