"""Lake streams of the cases app: the CaseEvent log, and a snapshot of each case the events touched.

`case_snapshots` semantics: it follows the event log (same positions, same fence). For every
exported batch of events it writes one row per case that has events in the batch: the case's core
fields and dynamic `fields` as they are when the batch is exported (at or after that event), with
`event_id`/`event_at` = its last event in the batch. So a case has a snapshot row for each batch
in which it changed, and its latest known state is its row with the largest `event_id`. Every
change of a case writes a CaseEvent in the same transaction, so no change goes unseen; a batch
re-written after a crashed export may carry a newer state of a case than the first attempt did.
"""

import pyarrow as pa

from apps.cases.models import Case, CaseEvent, Queue
from apps.core.feed import feed_high_water_mark
from apps.core.lake import LakeStream, id_batch_end, id_pending_since, lake_stream_register, lake_us

TS = pa.timestamp("us", tz="UTC")
EVENTS = CaseEvent._meta.db_table
CASES = Case._meta.db_table
QUEUES = Queue._meta.db_table


def _events_high_water_mark() -> int | None:
    return feed_high_water_mark(CaseEvent)


case_events = lake_stream_register(LakeStream(
    name="case_events",
    schema=pa.schema([
        ("id", pa.int64()), ("case_id", pa.string()), ("kind", pa.string()), ("actor_id", pa.int64()),
        ("data", pa.string()), ("created_at", TS),
    ]),
    position="id",
    time="created_at",
    select_sql=f"""
        SELECT id, case_id::text, kind, actor_id, data::text, {lake_us("created_at")}
        FROM "{EVENTS}" WHERE id > %(after)s AND id <= %(until)s ORDER BY id
    """,
    high_water_mark=_events_high_water_mark,
    batch_end=id_batch_end(EVENTS),
    pending_since=id_pending_since(EVENTS, "created_at"),
))

case_snapshots = lake_stream_register(LakeStream(
    name="case_snapshots",
    schema=pa.schema([
        ("event_id", pa.int64()), ("event_at", TS), ("case_id", pa.string()), ("queue_id", pa.int64()),
        ("queue", pa.string()), ("status", pa.string()), ("priority", pa.int16()), ("channel", pa.string()),
        ("source", pa.string()), ("subject", pa.string()), ("merchant_ref", pa.string()),
        ("customer_ref", pa.string()), ("delivery_ref", pa.string()), ("signal_type", pa.string()),
        ("assigned_agent_id", pa.int64()), ("location", pa.string()), ("config_version", pa.int64()),
        ("fields", pa.string()), ("created_at", TS), ("updated_at", TS), ("first_assigned_at", TS),
        ("first_response_at", TS), ("resolved_at", TS),
    ]),
    position="event_id",
    time="event_at",
    select_sql=f"""
        WITH touched AS (
            SELECT case_id, max(id) AS event_id, max(created_at) AS event_at FROM "{EVENTS}"
            WHERE id > %(after)s AND id <= %(until)s GROUP BY case_id
        )
        SELECT t.event_id, {lake_us("t.event_at")}, c.id::text, c.queue_id, q.slug, c.status, c.priority,
               c.channel, c.source, c.subject, c.merchant_ref, c.customer_ref, c.delivery_ref, c.signal_type,
               c.assigned_agent_id, c.location, c.config_version, c.fields::text, {lake_us("c.created_at")},
               {lake_us("c.updated_at")}, {lake_us("c.first_assigned_at")}, {lake_us("c.first_response_at")},
               {lake_us("c.resolved_at")}
        FROM touched t JOIN "{CASES}" c ON c.id = t.case_id JOIN "{QUEUES}" q ON q.id = c.queue_id
        ORDER BY t.event_id
    """,
    high_water_mark=_events_high_water_mark,
    batch_end=id_batch_end(EVENTS),
    pending_since=id_pending_since(EVENTS, "created_at"),
))
