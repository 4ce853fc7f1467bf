"""Shared by every case write: building CaseEvents, inserting them behind the feed's writer fence,
and locking a case row. Internal to apps.cases.services."""

from __future__ import annotations

import json
from typing import Any

from apps.cases.models import CORE_EDITABLE, Case, CaseEvent, EventKind
from apps.core.errors import NotFound
from apps.core.feed import feed_writer_enter


def _events_write(events: list[CaseEvent]) -> list[CaseEvent]:
    """The only way CaseEvents are inserted: behind the feed's writer fence (apps.core.feed).

    Services take the fence at the start of their transaction already; taking it again here
    (granted at once to its holder) keeps any future caller safe.
    """
    if not events:
        return events
    feed_writer_enter(CaseEvent)
    return CaseEvent.objects.bulk_create(events)


def _event(case: Case, kind: str, actor=None, **data: Any) -> CaseEvent:
    return CaseEvent(case=case, kind=kind, actor=actor if getattr(actor, "pk", None) else None,
                     data=json.loads(json.dumps(data, default=str)))


def _created_event(case: Case, actor, *, queue_slug: str, **extra: Any) -> CaseEvent:
    """The `created` event holds the case's whole initial state, so replaying the timeline from it
    gives the case as it is now (what tests/cases/test_timeline.py checks)."""
    return _event(case, EventKind.CREATED, actor, source=case.source, queue=queue_slug, status=case.status,
                  fields=case.fields, **{name: getattr(case, name) for name in CORE_EDITABLE}, **extra)


def _case_lock(case: Case | Any) -> Case:
    # The feed fence first, row locks second (see apps.core.feed: no lock cycle with a consumer).
    feed_writer_enter(CaseEvent)
    case_id = case.pk if isinstance(case, Case) else case
    try:
        return Case.objects.select_for_update(of=("self",)).select_related("queue").get(pk=case_id)
    except Case.DoesNotExist:
        raise NotFound("Case not found.") from None
