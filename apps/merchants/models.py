"""Merchants, the users who act for them in the Support Hub, and what each of those users has read."""

import uuid

from django.conf import settings
from django.db import models


class Merchant(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # The merchant's identifier in the marketplace; cases reference merchants by it.
    external_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.external_id})"


class MerchantUser(models.Model):
    """Membership of a Django user in a merchant: the only way API data is scoped."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="merchant_membership")
    merchant = models.ForeignKey(Merchant, on_delete=models.CASCADE, related_name="users")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} @ {self.merchant.external_id}"


class CaseReadState(models.Model):
    """A merchant user's read watermark on one case: every message of the case up to `read_up_to`
    (a message id) counts as read for that user. One row per (user, case)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="+")
    read_up_to = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "case"], name="casereadstate_one_per_user_case"),
            models.CheckConstraint(condition=models.Q(read_up_to__gte=0),
                                   name="casereadstate_up_to_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} read {self.case_id} up to {self.read_up_to}"


class MessageRead(models.Model):
    """One message a merchant user read past their watermark (read out of order). Marks at or under
    the watermark are redundant and removed when it moves."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey("cases.Message", on_delete=models.CASCADE, related_name="+")
    # The message's case, so a watermark move drops the case's marks through one index.
    case = models.ForeignKey("cases.Case", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "message"], name="messageread_once_per_user"),
        ]
        indexes = [models.Index(fields=["user", "case", "message"], name="messageread_user_case_idx")]

    def __str__(self) -> str:
        return f"{self.user_id} read message {self.message_id}"
