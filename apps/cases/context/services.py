"""Reading and refreshing the context cache.

A read is one indexed query while the record is fresh. A stale or missing record is fetched by
one reader only (a transaction-scoped advisory lock per record); readers that find the lock taken
serve the copy they have. An outside system that fails leaves the cached copy in place, shown
with its age and a "could not refresh" flag: reads never raise for an outside failure.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from apps.cases.context.clients import ContextUnavailable, context_client
from apps.cases.context.models import ContextRecord

log = logging.getLogger(__name__)

# The advisory lock space of context records (first key of pg_try_advisory_xact_lock(int, int)).
LOCK_CLASS = 0x0C7E
EVENTS_USERNAME = "context-events"
TABLE = ContextRecord._meta.db_table

_STORE_SQL = f"""
INSERT INTO {TABLE} (type, key, data, data_hash, fetched_at, stale, generation)
VALUES (%(type)s, %(key)s, %(data)s::jsonb, %(hash)s, now(), false, 0)
ON CONFLICT (type, key) DO UPDATE SET
    data = EXCLUDED.data, data_hash = EXCLUDED.data_hash, fetched_at = EXCLUDED.fetched_at,
    -- A stale tag that arrived while we fetched bumped the generation: keep the record stale.
    stale = {TABLE}.generation <> %(generation)s
RETURNING data, fetched_at, stale
"""

_BULK_SQL = """
UPDATE {table} AS r
SET data = v.data::jsonb, data_hash = v.hash, fetched_at = now(), stale = r.generation <> v.generation
FROM (VALUES {values}) AS v(key, data, hash, generation)
WHERE r.type = %s AND r.key = v.key AND (r.data_hash <> v.hash OR r.stale)
"""


@dataclass(frozen=True)
class ContextView:
    """What a page shows of one outside record."""

    type: str
    key: str
    data: dict | None  # None: nothing cached and nothing fetched
    fetched_at: datetime | None
    stale: bool = False  # known to be outdated (tagged, and not refreshed yet)
    refresh_failed: bool = False  # a fetch was tried and the outside system failed
    reason: str = ""  # why it could not be refreshed, for the page

    @property
    def unavailable(self) -> bool:
        return self.data is None

    def age_seconds(self, now: datetime | None = None) -> float | None:
        if self.fetched_at is None:
            return None
        return max(0.0, ((now or timezone.now()) - self.fetched_at).total_seconds())


def data_hash(data: dict) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _view(record: ContextRecord | None, type: str, key: str, **flags) -> ContextView:
    if record is None:
        return ContextView(type=type, key=key, data=None, fetched_at=None, **flags)
    return ContextView(type=type, key=key, data=record.data, fetched_at=record.fetched_at,
                       stale=record.stale, **flags)


def context_read(*, type: str, key: str) -> ContextView:
    """The record, fetched from its outside system only when it is missing or tagged stale."""
    record = ContextRecord.objects.filter(type=type, key=key).first()
    if record is not None and not record.stale:
        return _view(record, type, key)
    return context_fetch(type=type, key=key, cached=record)


def context_fetch(*, type: str, key: str, cached: ContextRecord | None = None,
                  force: bool = False) -> ContextView:
    """Fetch the record now and store it, unless another reader is already fetching it (then the
    cached copy is the answer). `force` refetches a fresh record too (ops' "refresh now")."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_xact_lock(%s, hashtext(%s))",
                           [LOCK_CLASS, f"{type}\x1f{key}"])
            if not cursor.fetchone()[0]:
                return _view(cached, type, key, reason="being refreshed")
        current = ContextRecord.objects.filter(type=type, key=key).first()
        if current is not None and not current.stale and not force:
            return _view(current, type, key)  # refreshed by the reader that held the lock before us
        try:
            data = context_client().fetch(type, key)
        except ContextUnavailable as exc:
            log.warning("context %s %s could not be refreshed: %s", type, key, exc,
                        extra={"context_type": type, "reason": str(exc)})
            return _view(current, type, key, refresh_failed=True, reason=str(exc))
        with connection.cursor() as cursor:
            cursor.execute(_STORE_SQL, {
                "type": type, "key": key, "data": json.dumps(data), "hash": data_hash(data),
                "generation": current.generation if current else 0})
            stored, fetched_at, stale = cursor.fetchone()
    stored = json.loads(stored) if isinstance(stored, str) else stored
    return ContextView(type=type, key=key, data=stored, fetched_at=fetched_at, stale=stale)


def context_mark_stale(*, type: str, keys: Iterable[str]) -> int:
    """Tag cached records stale in one statement; keys not cached are ignored (nothing to tag:
    their first read fetches them anyway). Returns how many were tagged."""
    return ContextRecord.objects.filter(type=type, key__in=list(keys)).update(
        stale=True, generation=F("generation") + 1)


def context_bust_type(*, type: str) -> int:
    """Tag every cached record of a type stale: each is fetched again on its next read."""
    return ContextRecord.objects.filter(type=type).update(stale=True, generation=F("generation") + 1)


def context_refresh(*, records: Sequence[ContextRecord]) -> dict[str, int]:
    """Ops' "refresh now": fetch each record at once; counts of refreshed and failed."""
    counts = {"refreshed": 0, "failed": 0}
    for record in records:
        view = context_fetch(type=record.type, key=record.key, cached=record, force=True)
        counts["failed" if view.refresh_failed or view.reason else "refreshed"] += 1
    return counts


def context_refresh_bulk(*, type: str, batch_size: int = 500) -> dict[str, int]:
    """Refresh every cached record of `type` from its outside system in batches: fetch many, then
    one UPDATE per batch that rewrites only the rows whose data changed (or that were tagged stale).
    Idempotent: a second run with the same outside data writes nothing."""
    counts = {"records": 0, "fetched": 0, "changed": 0, "missing": 0, "failed_batches": 0}
    rows = list(ContextRecord.objects.filter(type=type).order_by("key").values_list("key", "generation"))
    counts["records"] = len(rows)
    client = context_client()
    for start in range(0, len(rows), batch_size):
        batch = dict(rows[start:start + batch_size])
        try:
            fetched = client.fetch_many(type, list(batch))
        except ContextUnavailable as exc:
            log.warning("context bulk refresh of %s: a batch failed: %s", type, exc)
            counts["failed_batches"] += 1
            continue
        counts["fetched"] += len(fetched)
        counts["missing"] += len(batch) - len(fetched)
        if not fetched:
            continue
        params: list = []
        for key, data in fetched.items():
            params += [key, json.dumps(data), data_hash(data), batch[key]]
        values = ", ".join(["(%s, %s, %s, %s::integer)"] * len(fetched))
        with connection.cursor() as cursor:
            cursor.execute(_BULK_SQL.format(table=TABLE, values=values), [*params, type])
            counts["changed"] += cursor.rowcount
    return counts


def context_events_user():
    """The account change events act as (Idempotency-Keys belong to a user): active, no password."""
    user, created = get_user_model()._default_manager.get_or_create(
        username=EVENTS_USERNAME, defaults={"is_active": True})
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    return user
