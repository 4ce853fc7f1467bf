"""Write use cases of the Support Hub: API tokens (issue, revoke), read markers of merchant users,
and opening a case from the hub."""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import connection, transaction
from django.utils import timezone
from knox.models import AuthToken

from apps.cases.models import Case, Channel, Message, Queue, Source
from apps.cases.services import case_create, message_post_from_hub
from apps.core.errors import ApplicationError
from apps.merchants.models import CaseReadState, Merchant, MessageRead
from apps.merchants.selectors import hub_last_message_id


class HubUnavailable(ApplicationError):
    status_code = 503

    def __init__(self, message: str) -> None:
        super().__init__(message, code="hub_unavailable")


# Tokens -----------------------------------------------------------------------------------------

@transaction.atomic
def hub_token_create(*, user) -> tuple[AuthToken, str]:
    """A new token for `user` (the TTL of REST_KNOX) and its text, which is never stored.

    The user's expired tokens are removed here, and the oldest live ones past
    HUB_TOKEN_LIMIT_PER_USER: a script that logs in on every run without logging out keeps a
    bounded number of tokens instead of one per run.
    """
    tokens = AuthToken.objects.filter(user=user)
    tokens.filter(expiry__lte=timezone.now()).delete()
    keep = max(settings.HUB_TOKEN_LIMIT_PER_USER - 1, 0)
    surplus = list(tokens.order_by("-created", "digest").values_list("digest", flat=True)[keep:])
    if surplus:
        AuthToken.objects.filter(digest__in=surplus).delete()
    return AuthToken.objects.create(user=user)


def hub_token_revoke(*, token: AuthToken) -> None:
    AuthToken.objects.filter(digest=token.digest).delete()


def hub_tokens_revoke_all(*, user) -> int:
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted


# Read markers -----------------------------------------------------------------------------------

def hub_message_mark_read(*, user, message: Message) -> None:
    """Mark one message read for `user` (idempotent)."""
    MessageRead.objects.bulk_create(
        [MessageRead(user=user, message_id=message.pk, case_id=message.case_id)], ignore_conflicts=True)


_WATERMARK_SQL = f"""
INSERT INTO {CaseReadState._meta.db_table} AS w (user_id, case_id, read_up_to, updated_at)
VALUES (%(user)s, %(case)s, %(up_to)s, now())
ON CONFLICT (user_id, case_id) DO UPDATE
SET read_up_to = GREATEST(w.read_up_to, EXCLUDED.read_up_to), updated_at = EXCLUDED.updated_at
RETURNING read_up_to
"""


@transaction.atomic
def hub_case_mark_read(*, user, case: Case, up_to: int | None = None) -> int:
    """Mark every message of the case up to message id `up_to` read for `user` (all of them when
    None); returns the user's watermark on the case.

    The watermark only moves forward (one upsert with GREATEST, so two tabs racing cannot move it
    back), and the one-by-one marks it now covers are dropped.
    """
    if up_to is None:
        up_to = hub_last_message_id(case)
    with connection.cursor() as cursor:
        cursor.execute(_WATERMARK_SQL, {"user": user.pk, "case": case.pk, "up_to": up_to})
        watermark = cursor.fetchone()[0]
    MessageRead.objects.filter(user=user, case=case, message_id__lte=watermark).delete()
    return watermark


# Cases and messages -----------------------------------------------------------------------------

def hub_message_post(*, user, case: Case, text: str, files: list[UploadedFile]) -> Message:
    """A merchant user's reply on one of their cases (validated, stored and announced by the
    message store's service)."""
    return message_post_from_hub(case=case, user=user, text=text, files=files)


@transaction.atomic
def hub_case_open(*, user, merchant: Merchant, subject: str, text: str, files: list[UploadedFile]) -> Case:
    """A case the merchant opens from the hub, in the CASEHUB_HUB_QUEUE queue, with its first
    message. Both or neither: a refused attachment leaves no case behind."""
    queue = Queue.objects.filter(slug=settings.CASEHUB_HUB_QUEUE, is_active=True).first()
    if queue is None:
        raise HubUnavailable("Cases cannot be opened from the Support Hub right now; email support instead.")
    case = case_create(queue=queue, actor=user, source=Source.HUB, channel=Channel.WEB, subject=subject,
                       merchant_ref=merchant.external_id)
    message_post_from_hub(case=case, user=user, text=text, files=files)
    return case
