"""Assignment engine benchmark: micro-batches from several processes on one waiting backlog.

Full: 20,000 waiting cases, 2,000 agents, 20 queues, 4 worker processes running
`assignment_batch_run` (the service the Celery task calls; no broker hop) until the backlog is
drained or no agent has room. Next to it, in the same run: a bare SKIP LOCKED claim of the same
cases (claim + mark, no routing). Then PostgreSQL is checked: no agent over capacity, no case
assigned twice. Counters use a Redis database of their own, flushed before and after.
"""

from __future__ import annotations

import gc
import multiprocessing
import queue
import random
import time
import traceback

from _harness import emit, parse_args, percentile, setup, teardown

BATCH = 500


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    shape = (600, 60, 4, 2, 100) if args.quick else (20_000, 2_000, 20, 4, BATCH)
    db_name = setup("assignment")
    try:
        emit(run(*shape))
    finally:
        _redis().flushdb()
        _broker().flushdb()
        teardown(db_name, keep=args.keep_db)


def _bench_broker_url() -> str:
    from django.conf import settings

    return settings.REDIS_COUNTERS_URL.rsplit("/", 1)[0] + "/14"


def _broker():
    import redis

    return redis.Redis.from_url(_bench_broker_url())


def _redis():
    import redis
    from django.conf import settings

    return redis.Redis.from_url(settings.REDIS_COUNTERS_URL)


def build(cases_n: int, agents_n: int, queues_n: int) -> None:
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from apps.assignment.models import Agent, AgentQueue
    from apps.cases import services
    from apps.cases.models import Case, Status

    rng = random.Random(11)
    transitions = {"new": ["assigned", "resolved"], "assigned": ["resolved", "new"], "resolved": []}
    queues = []
    for n in range(queues_n):
        routing = {"required_skills": ["english"],
                   "strategy": "round_robin" if n % 2 else "most_spare_capacity"}
        if n % 4 == 0:
            routing |= {"optional_skills": ["vip"], "relax_after_seconds": 60, "channel_weights": {"chat": 2}}
        queues.append(services.queue_create(slug=f"q{n}", name=f"Queue {n}", fields_schema={},
                                            transitions=transitions, routing=routing))
    User = get_user_model()
    users = User.objects.bulk_create([User(username=f"bench-agent-{n}") for n in range(agents_n)])
    now = timezone.now()
    agents = Agent.objects.bulk_create([
        Agent(user=u, display_name=f"Agent {n}", skills=["english", "vip"] if n % 2 else ["english"],
              capacity=12, presence="available", presence_changed_at=now,
              heartbeat_at=now + timezone.timedelta(hours=1))
        for n, u in enumerate(users)])
    AgentQueue.objects.bulk_create(
        [AgentQueue(agent=a, queue=queues[n % queues_n], priority=1) for n, a in enumerate(agents)]
        + [AgentQueue(agent=a, queue=queues[(n + 7) % queues_n], priority=2) for n, a in enumerate(agents)
           if (n + 7) % queues_n != n % queues_n])
    created = now - timezone.timedelta(minutes=30)
    Case.objects.bulk_create([
        Case(queue=queues[n % queues_n], status=Status.NEW, priority=rng.choice([1, 2, 2, 3, 4]),
             channel="chat" if n % 10 == 0 else "email", subject=f"Case {n}",
             created_at=created + timezone.timedelta(milliseconds=n))
        for n in range(cases_n)], batch_size=5000)


def bare_claim(batch: int) -> tuple[int, float]:
    """Claim every waiting case in SKIP LOCKED batches and mark it, with no routing at all."""
    from django.db import connection, transaction

    claimed, start = 0, time.perf_counter()
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "WITH c AS (SELECT id FROM cases_case WHERE assigned_agent_id IS NULL"
                " AND location = 'casehub' AND routing_retry_at IS NULL"
                " AND status IN ('new','assigned','in_progress','pending_customer','reopened')"
                " ORDER BY priority DESC, created_at LIMIT %s FOR UPDATE SKIP LOCKED)"
                " UPDATE cases_case SET routing_retry_at = 'infinity' FROM c WHERE cases_case.id = c.id",
                [batch])
            if not cursor.rowcount:
                break
            claimed += cursor.rowcount
    seconds = time.perf_counter() - start
    with connection.cursor() as cursor:
        cursor.execute("UPDATE cases_case SET routing_retry_at = NULL")
        cursor.execute("VACUUM ANALYZE")
    return claimed, seconds


def worker(batch: int, out) -> None:
    try:
        _work(batch, out)
    except BaseException:
        # The parent waits for one answer per worker: a failure is an answer too, never a hang.
        out.put(traceback.format_exc())
        raise


def _work(batch: int, out) -> None:
    from django.db import connection

    from apps.assignment import counters
    from apps.assignment.services import assignment_batch_run, assignment_worker_warm
    from config.celery import app

    # A worker process keeps its connections between batches (CONN_MAX_AGE, the Redis pools, the
    # broker's producer pool): open them before timing, so the first batch is not also timing
    # the connection handshakes. The broker's is the one a batch sends its publish task through.
    connection.ensure_connection()
    counters._client().ping()
    with app.producer_or_acquire() as producer:
        producer.connection.ensure_connection()
    # And as each worker process does as it starts (worker_process_init): the agents' roster.
    assignment_worker_warm()

    statements = [0]

    def count(execute, sql, params, many, context):
        statements[0] += 1
        return execute(sql, params, many, context)

    times, rounds, assigned, idle = [], [], 0, 0
    with connection.execute_wrapper(count):
        while idle < 2:
            statements[0] = 0
            start = time.perf_counter()
            result = assignment_batch_run(batch_size=batch)
            if not result.claimed:
                idle += 1
                continue
            idle = 0
            times.append((time.perf_counter() - start) * 1000)
            rounds.append(statements[0])
            assigned += result.assigned
    connection.close()
    out.put((times, rounds, assigned))


def run(cases_n: int, agents_n: int, queues_n: int, processes: int, batch: int) -> dict:
    from django.conf import settings
    from django.db import connection, connections

    from apps.assignment import counters
    from apps.assignment.services import counters_reconcile

    settings.REDIS_COUNTERS_URL = settings.REDIS_COUNTERS_URL.rsplit("/", 1)[0] + "/15"
    _redis().flushdb()
    # The publish task each batch sends goes to a broker database of the benchmark's own, emptied
    # at the end: on the dev broker, the next `make run` worker would run them all.
    from config.celery import app

    app.conf.broker_url = _bench_broker_url()
    _broker().flushdb()
    build(cases_n, agents_n, queues_n)
    claimed, claim_s = bare_claim(batch)
    counters_reconcile()
    connections.close_all()
    counters._client.cache_clear()
    counters._scripts.cache_clear()

    # As `celery worker` does at start, before it forks its pool: the apps' task modules are
    # imported once, not by each process's first batch (the batch sends a task on commit).
    app.loader.import_default_modules()
    app.finalize(auto=True)
    app.backend  # noqa: B018 - loaded at start (the banner names it); each send's result refers to it
    # As a prefork worker pool should: the workers share the parent's heap copy-on-write, so the
    # parent's objects are frozen out of the cyclic collector; otherwise the first full collection
    # in each worker (due at the same batch in all of them) traverses and copies the whole heap.
    gc.collect()
    gc.freeze()
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(batch, out)) for _ in range(processes)]
    start = time.perf_counter()
    for proc in procs:
        proc.start()
    results = []
    while len(results) < len(procs):
        try:
            results.append(out.get(timeout=1))
        except queue.Empty:
            # A worker killed outside Python (a signal, the OOM killer) never answers.
            died = sum(proc.exitcode not in (None, 0) for proc in procs)
            if died > sum(isinstance(r, str) for r in results):
                codes = [proc.exitcode for proc in procs]
                raise SystemExit(f"a batch worker died: exit codes {codes}") from None
    failed = [r for r in results if isinstance(r, str)]
    if failed:
        raise SystemExit(f"a batch worker failed:\n{failed[0]}")
    wall = time.perf_counter() - start
    for proc in procs:
        proc.join()
    times = [t for r in results for t in r[0]]
    rounds = [n for r in results for n in r[1]]
    assigned = sum(r[2] for r in results)

    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM (SELECT a.id FROM assignment_agent a JOIN cases_case c"
                       " ON c.assigned_agent_id = a.id GROUP BY a.id, a.capacity"
                       " HAVING SUM(c.assigned_weight) > a.capacity) o")
        violations = cursor.fetchone()[0]
        cursor.execute("SELECT COUNT(*) FROM (SELECT case_id FROM cases_caseevent"
                       " WHERE kind IN ('assigned', 'offered') GROUP BY case_id HAVING COUNT(*) > 1) d")
        doubles = cursor.fetchone()[0]
        cursor.execute("SELECT COUNT(*) FROM cases_case WHERE assigned_agent_id IS NOT NULL")
        in_db = cursor.fetchone()[0]
    return {
        "cases": cases_n, "agents": agents_n, "queues": queues_n, "processes": processes,
        "cases_assigned": in_db, "cases_per_s": round(assigned / wall, 1),
        "skip_locked_claim_per_s": round(claimed / claim_s, 1), "batch_size": batch,
        "batches": len(times), "batch_p50_ms": round(percentile(times, 50), 1),
        "batch_p99_ms": round(percentile(times, 99), 1),
        "db_roundtrips_per_batch": round(percentile(rounds, 50), 1),
        "capacity_violations": violations, "double_assignments": doubles,
    }


if __name__ == "__main__":
    main()
