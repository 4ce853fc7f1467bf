"""Change-feed consumers: read an append-only event table in id order from a stored position.

The gap problem: ids come from a sequence when a row is inserted, but transactions commit in
any order. A consumer that read id 11 (committed) and stored position 11 would never see id 10
if 10's transaction was still open and committed a moment later.

The fence: every writer takes a *shared* advisory lock for the feed (`feed_writer_enter`,
transaction-scoped) before it inserts events. A consumer briefly takes the same lock
*exclusively*: it is granted only once every writer that may hold an unread id has committed
or rolled back, and no writer can allocate a new id while it is held. The largest id visible
then is a high-water mark below which no row can ever appear again; consumers read only up to
it. Writers pay one cheap lock call per transaction and wait at most for the consumer's
`max(id)` query; a consumer that cannot get the lock within FENCE_TIMEOUT_MS just skips the
round (its position is safe, it is merely later).

Writers take the fence at the *start* of their transaction, before any row lock: a writer
queued behind a waiting consumer then holds nothing another writer needs, so writers and a
consumer can never form a lock cycle.

Delivery is exactly-once per consumer: the cursor row is locked (`SELECT ... FOR UPDATE`), the
handler runs, and the position advances in the same transaction. A handler that fails rolls
its own writes back together with the position, so the batch is retried whole.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence

from django.db import OperationalError, connection, models, transaction

from apps.core.models import FeedCursor

logger = logging.getLogger(__name__)

FENCE_TIMEOUT_MS = 2000
# Advisory lock keys are bigint; a fixed high word keeps feed keys apart from other users'.
_KEY_NAMESPACE = 0x43480000_00000000 >> 1  # "CH", shifted to stay a positive int8


def feed_lock_key(model: type[models.Model]) -> int:
    return _KEY_NAMESPACE + zlib.crc32(model._meta.db_table.encode())


def feed_writer_enter(model: type[models.Model]) -> None:
    """Call inside the writing transaction before inserting rows into `model`'s feed."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [feed_lock_key(model)])


def feed_high_water_mark(model: type[models.Model]) -> int | None:
    """The largest id below which no new row of `model` can appear, or None if busy."""
    key = feed_lock_key(model)
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            # Transaction-local timeout, restored below: a caller's outer transaction keeps its own.
            cursor.execute("SELECT current_setting('lock_timeout')")
            previous = cursor.fetchone()[0]
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{int(FENCE_TIMEOUT_MS)}ms"])
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
            try:
                # A new statement: its snapshot includes every writer we waited for.
                cursor.execute(f'SELECT COALESCE(MAX(id), 0) FROM "{model._meta.db_table}"')
                return cursor.fetchone()[0]
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s), set_config('lock_timeout', %s, true)",
                               [key, previous])
    except OperationalError:
        logger.warning("feed fence busy; skipping this round", extra={"feed": model._meta.db_table})
        return None


def feed_consume(
    name: str,
    handler: Callable[[Sequence[models.Model]], None],
    *,
    model: type[models.Model],
    queryset: models.QuerySet | None = None,
    fields: Sequence[str] | None = None,
    batch_size: int = 1000,
    max_batches: int = 100,
) -> int:
    """Feed events after `name`'s position to `handler` in id order; returns how many were read.

    `queryset` may narrow or prefetch (e.g. `select_related`); ordering is always by id. With
    `fields`, the handler gets `(id, *fields)` tuples instead of model instances: a consumer that
    reads a column or two builds no model per event.
    """
    high = feed_high_water_mark(model)
    if high is None:
        return 0
    FeedCursor.objects.get_or_create(name=name)
    base = queryset if queryset is not None else model._default_manager.all()
    total = 0
    for _ in range(max_batches):
        with transaction.atomic():
            cursor = FeedCursor.objects.select_for_update().get(name=name)
            rows = base.filter(id__gt=cursor.position, id__lte=high).order_by("id")
            if fields is not None:
                rows = rows.values_list("id", *fields)
            batch = list(rows[:batch_size])
            if not batch:
                return total
            handler(batch)
            cursor.position = batch[-1][0] if fields is not None else batch[-1].id
            cursor.save(update_fields=["position", "updated_at"])
        total += len(batch)
        if len(batch) < batch_size:
            break
    return total


def feed_lag(name: str, *, model: type[models.Model]) -> int:
    """About how many events the consumer has not read yet (for metrics).

    `max(id) - position`: two index lookups whatever the backlog; ids burnt by rolled-back
    transactions make it an upper bound.
    """
    from django.db.models import Max

    position = FeedCursor.objects.filter(name=name).values_list("position", flat=True).first() or 0
    newest = model._default_manager.aggregate(newest=Max("id"))["newest"] or 0
    return max(0, newest - position)
