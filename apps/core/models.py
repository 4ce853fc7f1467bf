"""Shared platform models: the stored position of each change-feed consumer."""

from django.db import models


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
