"""Shared platform models: the stored position of each change-feed consumer, and the answers
given to creating requests that carried an Idempotency-Key."""

from django.conf import settings
from django.db import models
from django.db.models.functions import Now


class FeedCursor(models.Model):
    """How far one named consumer has read a change feed (an event table ordered by id)."""

    name = models.CharField(max_length=100, unique=True)
    position = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(position__gte=0), name="feedcursor_position_gte_0"),
        ]

    def __str__(self) -> str:
        return f"{self.name} @ {self.position}"


class IdempotencyKey(models.Model):
    """A creating request's Idempotency-Key and the answer it got, so that the client's retry is
    given that answer again instead of creating a second object (apps/core/idempotency.py)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    method = models.CharField(max_length=10)
    path = models.TextField()
    # sha256 of the request body (hex): the same key with another body is a client error.
    fingerprint = models.CharField(max_length=64)
    # Written in the transaction that created the object, so a committed key always has them.
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(db_default=Now())

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="core_idempotencykey_user_key"),
            # Printable ASCII, 1 to 255 characters: the rule the API checks the header against.
            models.CheckConstraint(
                condition=models.Q(key__regex=r"^[ -~]{1,255}$"), name="core_idempotencykey_key_printable"
            ),
        ]
        # The TTL purge deletes by age.
        indexes = [models.Index(fields=["created_at"], name="core_idempotencykey_created")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} [{self.key}]"


class LakeWatermark(models.Model):
    """How far one lake stream has been exported (apps/core/lake.py), and the range an export that
    has started is writing."""

    stream = models.CharField(max_length=100, unique=True)
    # Every row of the stream with a position up to this one is in the lake, exactly once.
    position = models.BigIntegerField(default=0)
    # Committed before the range's files are written and cleared as `position` reaches it: an
    # export that crashed in between writes this same range again (same rows, same file names)
    # instead of planning a wider one whose files would sit beside the first ones.
    pending_until = models.BigIntegerField(null=True, blank=True)
    exported_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(position__gte=0),
                                   name="core_lakewatermark_position_gte_0"),
            models.CheckConstraint(
                condition=models.Q(pending_until__isnull=True)
                | models.Q(pending_until__gt=models.F("position")),
                name="core_lakewatermark_pending_after_position",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.stream} @ {self.position}"
