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
