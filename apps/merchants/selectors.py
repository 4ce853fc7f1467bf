"""Read queries of the merchants app: who acts for which merchant, and the Support Hub's views of
a merchant's cases, their threads and what each merchant user has read. Every query here is
scoped to one merchant; an id of another merchant's object finds nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import (
    BooleanField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Prefetch,
    Q,
    QuerySet,
    Subquery,
    Value,
)
from django.db.models.functions import Coalesce, Greatest

from apps.cases.models import Attachment, Case, CaseEvent, EventKind, Message
from apps.core.input import BIGINT_MAX
from apps.merchants.models import CaseReadState, Merchant, MessageRead

# Timeline events a merchant may see; everything else (notes, assignment, offers, routing,
# transfers, field changes) is how the case is worked inside, not what happened to it.
MERCHANT_EVENT_KINDS = (EventKind.CREATED, EventKind.STATUS_CHANGED)


def merchant_for_user(user) -> Merchant | None:
    """The merchant a user acts for, or None (staff and anonymous users act for none)."""
    if not getattr(user, "is_authenticated", False):
        return None
    membership = getattr(user, "merchant_membership", None)
    return membership.merchant if membership else None


def hub_cases(merchant: Merchant) -> QuerySet[Case]:
    """The merchant's cases (none when it has no external id to match)."""
    if not merchant.external_id:
        return Case.objects.none()
    return Case.objects.filter(merchant_ref=merchant.external_id)


def _visible_messages() -> QuerySet[Message]:
    return Message.objects.filter(merchant_visible=True)


def _last_message_at():
    latest = (_visible_messages().filter(case=OuterRef("pk")).order_by()
              .values("case").annotate(latest=Max("sent_at")).values("latest"))
    return Subquery(latest)


def hub_case_list(merchant: Merchant) -> QuerySet[Case]:
    """The merchant's cases, newest first, with `last_activity_at`: the latest of the case's own
    update and its newest merchant-visible message (GREATEST skips a NULL: no messages)."""
    return (hub_cases(merchant).only("id", "subject", "status", "created_at", "updated_at")
            .annotate(last_activity_at=Greatest(F("updated_at"), _last_message_at()))
            .order_by("-created_at", "-id"))


def hub_case_get(merchant: Merchant, case_id: uuid.UUID) -> Case | None:
    return hub_case_list(merchant).filter(pk=case_id).first()


def unread_counts(*, user, case_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """Unread messages per case for one merchant user, for a page of cases in one statement.

    Unread: merchant-visible, not written by the user, after the user's watermark on the case and
    not marked read one by one. Cases with none are absent from the answer.
    """
    ids = list(case_ids)
    if not ids:
        return {}
    sql = f"""
        SELECT m.case_id, count(*)
        FROM {Message._meta.db_table} m
        -- The page's cases named on the watermark side too, so the planner probes the page's
        -- read states instead of hashing every read state of the user.
        LEFT JOIN {CaseReadState._meta.db_table} w
               ON w.user_id = %(user)s AND w.case_id = m.case_id AND w.case_id = ANY(%(cases)s)
        WHERE m.case_id = ANY(%(cases)s) AND m.merchant_visible
          AND m.id > COALESCE(w.read_up_to, 0)
          AND m.sender_user_id IS DISTINCT FROM %(user)s
          AND NOT EXISTS (SELECT 1 FROM {MessageRead._meta.db_table} r
                          WHERE r.user_id = %(user)s AND r.message_id = m.id)
        GROUP BY m.case_id
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"user": user.pk, "cases": ids})
        return dict(cursor.fetchall())


def hub_thread(*, case: Case, user) -> QuerySet[Message]:
    """The merchant-visible messages of a case, oldest first, each with `is_read` for `user` and its
    sender's agent (for the display name) and attachments loaded."""
    watermark = CaseReadState.objects.filter(user=user, case=case).values("read_up_to")[:1]
    marked = MessageRead.objects.filter(user=user, case=case, message=OuterRef("pk"))
    return (
        _visible_messages().filter(case=case)
        .select_related("sender_user__agent")
        .prefetch_related(Prefetch("attachments", queryset=Attachment.objects.order_by("id")))
        # A message without a sender user compares NULL: COALESCE makes that "not read".
        .annotate(is_read=Coalesce(ExpressionWrapper(
            Exists(marked) | Q(sender_user=user) | Q(pk__lte=Coalesce(Subquery(watermark), Value(0))),
            output_field=BooleanField(),
        ), Value(False)))
        .order_by("id")
    )


def hub_message_in_case(*, case: Case, message_id: int) -> Message | None:
    if not 0 < message_id <= BIGINT_MAX:
        return None
    return _visible_messages().filter(case=case, pk=message_id).only("id", "case_id").first()


def hub_last_message_id(case: Case) -> int:
    return _visible_messages().filter(case=case).aggregate(last=Max("id"))["last"] or 0


@dataclass(frozen=True)
class Activity:
    """One entry of a case's merchant-visible activity."""

    kind: str  # "opened", "status_changed" or "message"
    at: datetime
    status: str | None = None
    from_status: str | None = None
    message: Message | None = None


def hub_case_activity(case: Case) -> list[Activity]:
    """What happened to a case that its merchant may see, oldest first: its opening, each status
    change (the statuses only, never the reason or who) and each merchant-visible message."""
    entries: list[Activity] = []
    for kind, data, at in (CaseEvent.objects.filter(case=case, kind__in=MERCHANT_EVENT_KINDS)
                           .order_by("id").values_list("kind", "data", "created_at")):
        data = data if isinstance(data, dict) else {}
        if kind == EventKind.CREATED:
            entries.append(Activity(kind="opened", at=at, status=_text(data.get("status"))))
        else:
            entries.append(Activity(kind="status_changed", at=at, status=_text(data.get("to")),
                                    from_status=_text(data.get("from"))))
    messages = _visible_messages().filter(case=case).select_related("sender_user__agent").order_by("id")
    entries += [Activity(kind="message", at=m.sent_at, message=m) for m in messages]
    # Stable: events keep their order among themselves, messages theirs.
    return sorted(entries, key=lambda entry: entry.at)


def _text(value) -> str | None:
    return value if isinstance(value, str) else None


def hub_attachment_get(merchant: Merchant, attachment_id: int) -> Attachment | None:
    """An attachment of a merchant-visible message of one of the merchant's cases."""
    if not 0 < attachment_id <= BIGINT_MAX or not merchant.external_id:
        return None
    return (Attachment.objects.filter(pk=attachment_id, case__merchant_ref=merchant.external_id,
                                      message__merchant_visible=True).first())
