"""Support metrics: the rollup consumer over a large event log, the admin dashboard's response
time, and the lake export of the same events (see ../shared/BENCHMARKS.md).

Data (full): 1,000,000 case events, 8 per case (125,000 cases over the last 30 days, 20 queues,
200 agents): created, offered, offer accepted, an agent reply, pending the customer and back, a
note, resolved; half the cases share a customer and delivery with another (the follow-up
lookup), one in ten is reopened instead of noted. Cases and events are written with COPY.

Phases: the `metric_rollups` consumer reads the whole log (`rollup_events_per_s`); the dashboard
page is requested 200 times through Django's test client as an ops user, alternating all queues
and a three-queue filter, over the default 30 days (`dashboard_p95_ms`); the `case_events` lake
stream is exported to Parquet in a temporary directory (`export_events_per_s`).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import emit, parse_args, percentile, setup, teardown, timer

EVENTS_PER_CASE = 8
QUEUES, AGENTS, DAYS = 20, 200, 30
REQUESTS = 200


def build(events: int) -> dict:
    """Queues, agents and their users with the ORM (a few hundred rows); cases and events by COPY."""
    from django.contrib.auth.models import Group, User
    from django.db import connection, transaction

    from apps.assignment.models import Agent
    from apps.cases.models import CaseEvent, Queue

    queues = Queue.objects.bulk_create([Queue(slug=f"bench-{n}", name=f"Bench {n}") for n in range(QUEUES)])
    users = User.objects.bulk_create([User(username=f"bench-agent-{n}", is_staff=True)
                                      for n in range(AGENTS)])
    agents = Agent.objects.bulk_create([Agent(user=u, display_name=f"Agent {n}", capacity=50)
                                        for n, u in enumerate(users)])
    ops = User.objects.create(username="bench-ops", is_staff=True)
    ops.groups.add(Group.objects.get(name="ops"))
    cases = events // EVENTS_PER_CASE
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=DAYS)
    step = (now - timedelta(hours=6) - start) / cases

    def case_of(i: int) -> tuple:
        """(id, queue, agent, creation time, customer and delivery) of the i-th case."""
        pair = (f"cust-{i // 2}", f"del-{i // 2}") if i % 4 < 2 else ("", "")
        return uuid.UUID(int=(1 << 64) + i), queues[i % QUEUES], agents[i % AGENTS], start + step * i, pair

    def case_rows():
        for i in range(cases):
            case_id, queue, _, created, pair = case_of(i)
            resolved = created + timedelta(minutes=50)
            yield (case_id, queue.pk, "resolved", 2, "web", "api", f"case {i}", "", *pair, "", "{}",
                   "casehub", created, resolved, resolved)

    def event_rows():
        for i in range(cases):
            case_id, queue, agent, created, _ = case_of(i)
            user = agent.user_id
            history = [
                ("created", None, {"source": "api", "queue": queue.slug, "status": "new"}, 0),
                ("offered", None, {"to": agent.pk}, 1),
                ("offer_accepted", user, {"agent": agent.pk, "name": agent.display_name}, 2),
                ("message", user, {"direction": "outbound", "message": i}, 10),
                ("status_changed", user, {"from": "in_progress", "to": "pending_customer"}, 11),
                ("status_changed", None, {"from": "pending_customer", "to": "in_progress"}, 30),
                ("note", user, {"body": "checked the order"}, 40),
                ("status_changed", user, {"from": "in_progress", "to": "resolved"}, 50),
            ]
            if i % 10 == 0:  # reopened by the customer instead of a note
                history[6] = ("status_changed", None, {"from": "resolved", "to": "reopened"}, 55)
            for kind, actor, data, minutes in history:
                yield case_id, kind, actor, json.dumps(data), created + timedelta(minutes=minutes)

    # Rows are generated as they are sent: a million events never sit in memory at once.
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.copy("COPY cases_case (id, queue_id, status, priority, channel, source, subject, "
                         "merchant_ref, customer_ref, delivery_ref, signal_type, fields, location, "
                         "created_at, updated_at, resolved_at) FROM STDIN") as copy:
            for row in case_rows():
                copy.write_row(row)
        with cursor.copy(f"COPY {CaseEvent._meta.db_table} (case_id, kind, actor_id, data, created_at) "
                         "FROM STDIN") as copy:
            for row in event_rows():
                copy.write_row(row)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE cases_case")
        cursor.execute(f"VACUUM ANALYZE {CaseEvent._meta.db_table}")
    return {"events": cases * EVENTS_PER_CASE, "cases": cases, "ops": ops, "queues": queues}


def rollups() -> float:
    from django.db import connection

    from apps.cases.services import metric_rollups_consume

    with timer() as took:
        while metric_rollups_consume(batch_size=2000):
            pass
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE cases_metricrollupqueueday")
        cursor.execute("VACUUM ANALYZE cases_metricrollupagentday")
    return took["s"]


def dashboard(ops, queues) -> list[float]:
    import time

    from django.test import Client

    client = Client()
    client.force_login(ops)
    url = "/admin/cases/casestats/dashboard/"
    variants = [{}, {"queues": [q.pk for q in queues[:3]]}]
    for variant in variants:  # warm caches the way a running server is warm
        assert client.get(url, variant).status_code == 200
    took = []
    for n in range(REQUESTS):
        started = time.perf_counter()
        response = client.get(url, variants[n % 2])
        took.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return took


def export() -> tuple[int, float]:
    from apps.core.lake import lake_stream_export

    written = 0
    with timer() as took:
        while True:
            batch = lake_stream_export(stream="case_events")
            written += batch
            if not batch:
                break
    return written, took["s"]


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    lake_dir = tempfile.mkdtemp(prefix="casehub-bench-lake-")
    os.environ["LAKE_STORAGE_OPTIONS"] = json.dumps({"location": lake_dir, "allow_overwrite": True})
    db_name = setup("metrics")
    try:
        with timer() as load:
            data = build(20_000 if args.quick else 1_000_000)
        rollup_s = rollups()
        took = dashboard(data["ops"], data["queues"])
        exported, export_s = export()
        assert exported == data["events"], (exported, data["events"])
        from apps.cases.models import MetricRollupAgentDay, MetricRollupQueueDay

        result = {
            "events": data["events"],
            "rollup_events_per_s": round(data["events"] / rollup_s),
            "dashboard_p95_ms": round(percentile(took, 95), 1),
            "export_events_per_s": round(exported / export_s),
            "cases": data["cases"],
            "load_s": round(load["s"], 1),
            "rollup_s": round(rollup_s, 1),
            "dashboard_p50_ms": round(percentile(took, 50), 1),
            "queue_day_rows": MetricRollupQueueDay.objects.count(),
            "agent_day_rows": MetricRollupAgentDay.objects.count(),
            "export_s": round(export_s, 1),
        }
    finally:
        teardown(db_name, keep=args.keep_db)
        shutil.rmtree(lake_dir, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
