"""Case popup benchmark: the workspace's short-poll fallback and its websocket push, on the real
ASGI server (see ../shared/BENCHMARKS.md).

Data: N agents (full: 500) in one queue, capacity 1 each, available, each with a poll token
(minted with `realtime.poll_token_mint`, as the workspace page does), a database session (what
signing in leaves) and a published state; one waiting case per agent. Two uvicorn processes
serve `config.asgi:application` with the flags `make run` uses, on loopback. Redis databases 4-7
(CASEHUB_REDIS_DB_OFFSET=4) hold the bench's broker, cache, channel layer and workspace state, apart
from a dev stack's 0-3 and the tests' 8-11, and are flushed before and after.

Phase 1: 200 agents (quick: 20) poll `GET /api/v1/agent/state/` once per second each (starts spread
over the second, half on each process) with their `X-Poll-Token` and last ETag in If-None-Match,
for 60 s after a warm-up; meanwhile the bench sets a few agents' presence per second through
`agent_presence_set`, so their next poll is a 200 and every other one a 304.
`db_queries_per_poll` is counted by PostgreSQL: the delta of `xact_commit + xact_rollback` of the
bench database in `pg_stat_database` over the phase, minus the bench's own transactions (the
presence changes and their publishes, counted as they run), divided by the polls. Both readings
come over a connection to the maintenance database (so reading adds nothing) once the counters
have been still for 11 s (an idle backend may hold its counts back for 10 s). `pg_stat_statements`
is not loaded on the embedded server; Django runs each statement outside an atomic block in a
transaction of its own, so this counts every such statement, and a multi-statement transaction
once (a lower bound only there; the poll path opens none). Autovacuum's visits to the database
count too (about ten transactions a minute here): noise of under 0.001 per poll in a full run.

Phase 2: 500 websocket clients (quick: 20), one per agent, half on each process, each sending its
agent's session cookie to `/ws/agent/` and waiting for its state. A Celery worker as `make run`
starts one (queue `assignment`, warmed up) runs whatever the engine sends after its commit. A child
process (fork, standing in for the worker that runs the batch) runs `assignment_batch_run` once
over the waiting cases inside an outer transaction whose first commit hook takes the commit time,
before the engine's own hooks run. Each client takes its receipt time when the state with its offer
arrives; both times are CLOCK_MONOTONIC, one clock for the whole machine. A push that never arrives
is counted (`push_missing`, with the close codes of sockets the server dropped) and fails the run.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import os
import random
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._harness import (
    cpu_seconds,
    emit,
    parse_args,
    percentile,
    postgres_pids,
    settle_client_heap,
    setup,
    teardown,
)

# The bench's Redis databases: broker 4, cache 5, channel layer 6, counters and workspace state 7.
REDIS_DB_OFFSET = 4
STATE_URL = "/api/v1/agent/state/"
SOCKET_PATH = "/ws/agent/"
SESSION_BACKEND = "apps.core.auth.AccountBackend"
GOALS = {"p99_ms": 20.0, "db_queries_per_poll": 0.05, "push_p99_ms": 250.0}


@dataclass(frozen=True)
class Shape:
    pollers: int
    warmup_s: float
    poll_s: float
    changes_per_s: float  # presence changes made by the bench while the pollers run
    ws_clients: int
    connect_concurrency: int  # websocket handshakes in flight at once


FULL = Shape(pollers=200, warmup_s=5.0, poll_s=60.0, changes_per_s=4.0, ws_clients=500,
             connect_concurrency=50)
QUICK = Shape(pollers=20, warmup_s=1.0, poll_s=5.0, changes_per_s=2.0, ws_clients=20,
              connect_concurrency=20)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    # Before settings load: the web processes inherit it too.
    os.environ["CASEHUB_REDIS_DB_OFFSET"] = str(REDIS_DB_OFFSET)
    db_name = setup("popup")
    try:
        redis_flush()
        result = run(QUICK if args.quick else FULL, db_name)
    finally:
        redis_flush()
        teardown(db_name, keep=args.keep_db)
    emit(result)
    if result["poll_errors"] or result["push_missing"]:
        sys.exit(f"failed polls: {result['poll_error_statuses']}; "
                 f"pushes not received: {result['push_missing']}")


def redis_flush() -> None:
    import redis
    from django.conf import settings

    for n in range(4):
        redis.Redis.from_url(settings.REDIS_URL.rsplit("/", 1)[0] + f"/{REDIS_DB_OFFSET + n}").flushdb()


# Data -----------------------------------------------------------------------------------------

@dataclass
class BenchAgent:
    id: int
    user_id: int
    token: str
    cookie: str


def build(n: int) -> list[BenchAgent]:
    """n agents in one offering queue with a poll token, a session and a published state each, and
    n waiting cases for the engine."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore
    from django.contrib.sessions.models import Session
    from django.db import connection
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    from apps.assignment import realtime
    from apps.assignment.models import Agent, AgentQueue
    from apps.assignment.services import counters_reconcile
    from apps.cases import services
    from apps.cases.models import Case, Status

    transitions = {"new": ["assigned", "resolved"], "assigned": ["resolved", "new"], "resolved": []}
    queue = services.queue_create(slug="popup", name="Popup", fields_schema={}, transitions=transitions,
                                  routing={"offer_timeout_seconds": 600})
    now = timezone.now()
    User = get_user_model()
    users = User.objects.bulk_create([User(username=f"popup-agent-{i}", password="!bench", is_staff=True)
                                      for i in range(n)])
    # Heartbeats far ahead: phase 2 comes more than a heartbeat TTL after the build.
    agents = Agent.objects.bulk_create([
        Agent(user=u, display_name=f"Agent {i}", capacity=1, presence="available", presence_changed_at=now,
              heartbeat_at=now + timezone.timedelta(hours=1)) for i, u in enumerate(users)])
    AgentQueue.objects.bulk_create([AgentQueue(agent=a, queue=queue, priority=1) for a in agents])
    Case.objects.bulk_create([
        Case(queue=queue, status=Status.NEW, priority=2, channel="chat", subject=f"Parcel {i} never arrived",
             created_at=now - timezone.timedelta(seconds=n - i)) for i in range(n)])

    # What signing in leaves in the session store, for the websocket's AuthMiddlewareStack.
    store = SessionStore()
    keys = [get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789") for _ in users]
    expires = now + timezone.timedelta(days=1)
    Session.objects.bulk_create([
        Session(session_key=key, expire_date=expires,
                session_data=store.encode({SESSION_KEY: str(u.pk), BACKEND_SESSION_KEY: SESSION_BACKEND,
                                           HASH_SESSION_KEY: u.get_session_auth_hash()}))
        for key, u in zip(keys, users, strict=True)])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    counters_reconcile()
    realtime.agent_state_publish([a.pk for a in agents])
    return [BenchAgent(id=a.pk, user_id=u.pk, token=realtime.poll_token_mint(user_id=u.pk, agent_id=a.pk),
                       cookie=f"{settings.SESSION_COOKIE_NAME}={key}")
            for a, u, key in zip(agents, users, keys, strict=True)]


# Servers --------------------------------------------------------------------------------------

class Server:
    """One uvicorn process on config.asgi:application as `make run` starts it, on a free loopback
    port, against the benchmark database; its log goes to a file under the var directory."""

    def __init__(self, db_name: str, n: int) -> None:
        from config import embedded

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                "--port", str(self.port), "--lifespan", "on", "--no-access-log"]
        env = os.environ | {"CASEHUB_DB_NAME": db_name, "CASEHUB_EMBEDDED_QUIET": "1"}
        self.log_path = embedded.var_dir() / f"bench-popup-server-{n}.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the web server exited ({self.proc.returncode}):\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the web server did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what it started
                self.proc.wait()
        self.log.close()


class Worker:
    """A Celery worker as `make run` starts one (prefork, two processes), on the engine's queue and
    against the benchmark database: it runs the publish the engine's batch sends after commit."""

    def __init__(self, db_name: str) -> None:
        import uuid

        from config import embedded

        self.node = f"bench-popup-{uuid.uuid4().hex[:8]}@localhost"
        argv = [sys.executable, "-m", "celery", "-A", "config", "worker", "-n", self.node, "-Q", "assignment",
                "-c", "2", "--without-gossip", "--without-mingle", "--loglevel", "INFO"]
        env = os.environ | {"CASEHUB_DB_NAME": db_name, "CASEHUB_EMBEDDED_QUIET": "1"}
        self.log_path = embedded.var_dir() / "bench-popup-worker.log"
        self.log = self.log_path.open("wb")
        self.proc = subprocess.Popen(argv, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout: float = 90.0) -> None:
        from config.celery import app

        deadline = time.monotonic() + timeout
        while not app.control.ping(destination=[self.node], timeout=0.5):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the celery worker did not start:\n{self.log_tail()}")

    def warm(self, agent_ids: list[int], timeout: float = 60.0) -> None:
        """Both pool processes open their connections on publishes that change nothing (the states
        are current), as a long-running worker has: the measured publish is not their first task."""
        import redis
        from django.conf import settings

        from apps.assignment.services.engine import PUBLISH_TASK
        from apps.core.scheduling import task_send
        from config.celery import app

        for _ in range(4):
            task_send(PUBLISH_TASK, agent_ids)
        broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        inspect = app.control.inspect(destination=[self.node], timeout=0.5)
        deadline = time.monotonic() + timeout
        while broker.llen("assignment") or any((inspect.active() or {}).values()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the celery worker did not finish its warm-up:\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: only what it started
                self.proc.wait()
        self.log.close()


# Statements counted by PostgreSQL ---------------------------------------------------------------

class DbTransactions:
    """The bench database's committed and rolled-back transactions, from `pg_stat_database`, read
    over a connection to the maintenance database so that reading adds none."""

    def __init__(self, db_name: str) -> None:
        import psycopg
        from django.db import connection

        self.db_name = db_name
        params = connection.get_connection_params() | {"dbname": "postgres", "autocommit": True}
        self.conn = psycopg.connect(**params)

    def read(self) -> int:
        row = self.conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                                [self.db_name]).fetchone()
        return int(row[0])

    def settled(self, quiet_s: float = 11.0, timeout: float = 60.0) -> int:
        """The count once no change has shown for `quiet_s`. An idle backend reports its counters
        at once, unless it reported less than a second before: then 10 s later
        (PGSTAT_IDLE_INTERVAL). A backend that exits reports at once."""
        deadline = time.monotonic() + timeout
        value, since = self.read(), time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = self.read()
            if now != value:
                value, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return value
        return value

    def close(self) -> None:
        self.conn.close()


class PresenceChanger:
    """Sets agents' presence through the service from one thread of its own (so the pollers' event
    loop never waits on it), counting the transactions it makes so they can be subtracted."""

    def __init__(self, agents: list[BenchAgent], per_second: float) -> None:
        self.agents = agents
        self.interval = 1.0 / per_second
        self.transactions = 0
        self.changes = 0
        self.touched: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._begin = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        """Connect (setting up a session is transactions too), then wait for begin()."""
        self._thread = threading.Thread(target=self._run, name="presence-changer", daemon=True)
        self._thread.start()
        self._ready.wait()

    def begin(self) -> None:
        self._begin.set()

    def stop(self) -> None:
        self._stop.set()
        self._begin.set()
        self._thread.join()
        if self.error:
            raise self.error

    def _count(self, execute, sql, params, many, context):
        from django.db import connection

        # Outside an atomic block each statement is a transaction of its own; each atomic block
        # (one per service call) is counted where it is entered.
        if not connection.in_atomic_block:
            self.transactions += 1
        return execute(sql, params, many, context)

    def _run(self) -> None:
        from django.db import connection

        from apps.assignment.models import Agent
        from apps.assignment.services import agent_presence_set

        try:
            connection.ensure_connection()
            rng = random.Random(7)
            with connection.execute_wrapper(self._count):
                self._ready.set()
                self._begin.wait()
                due = time.monotonic()
                while not self._stop.wait(max(0.0, due - time.monotonic())):
                    due += self.interval
                    agent = Agent.objects.only("pk", "presence").get(pk=rng.choice(self.agents).id)
                    self.transactions += 1  # the service's atomic block
                    agent_presence_set(agent=agent, presence="away" if agent.presence == "available"
                                       else "available")
                    self.changes += 1
                    self.touched.add(agent.pk)
        except BaseException as exc:  # reported by stop()
            self.error = exc
            self._ready.set()
        finally:
            connection.close()


class CpuMeter:
    """CPU seconds used between start() and stop() by the web processes, PostgreSQL, Redis and this
    process (the clients), and the whole machine's busy share: what else ran on the shared cores."""

    def __init__(self, servers: list[Server]) -> None:
        from config import embedded

        self.servers = servers
        self.postmaster = embedded.service_pid("postgres")
        self.redis = embedded.service_pid("redis")

    def _sample(self) -> dict:
        import psutil

        cpu, db = cpu_seconds, postgres_pids(self.postmaster)
        machine = psutil.cpu_times()
        return {"web": cpu(s.proc.pid for s in self.servers), "db": cpu(db),
                "redis": cpu([self.redis] if self.redis else []), "client": {0: time.process_time()},
                "busy": {0: machine.user + machine.system + machine.nice + machine.irq + machine.softirq},
                "wall": time.perf_counter()}

    def start(self) -> None:
        self.first = self._sample()

    def stop(self, polls: int) -> dict:
        last = self._sample()
        wall = last["wall"] - self.first["wall"]
        # Per process: a backend that started meanwhile counts from zero, one that ended is lost.
        used = {name: sum(t - self.first[name].get(pid, 0.0) for pid, t in last[name].items())
                for name in ("web", "db", "redis", "client", "busy")}
        parts = ("web", "db", "redis", "client")
        ours = sum(used[name] for name in parts)
        return {"web_cpu_ms_per_poll": round(1000 * used["web"] / max(1, polls), 3),
                **{f"{name}_cpu_pct": round(100 * used[name] / wall, 1) for name in parts},
                "machine_busy_pct": round(100 * used["busy"] / wall, 1),
                "others_cpu_pct": round(100 * max(0.0, used["busy"] - ours) / wall, 1)}


# Phase 1: polls -------------------------------------------------------------------------------

@dataclass
class Poller:
    agent: BenchAgent
    http: object
    etag: str = ""


@dataclass
class PollSamples:
    ms: list[float] = field(default_factory=list)
    at: list[float] = field(default_factory=list)  # when each poll was sent (perf_counter)
    statuses: Counter = field(default_factory=Counter)
    lag_ms: list[float] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def error_statuses(self) -> dict[str, int]:
        return {str(s): n for s, n in self.statuses.items() if s not in (200, 304)}

    def p99_by_window(self, seconds: float) -> list[float]:
        windows: dict[int, list[float]] = {}
        for at, ms in zip(self.at, self.ms, strict=True):
            windows.setdefault(int((at - self.started) // seconds), []).append(ms)
        return [round(percentile(windows[k], 99), 1) for k in sorted(windows)]


async def _poll(poller: Poller) -> tuple[float, int]:
    import httpx

    headers = {"X-Poll-Token": poller.agent.token}
    if poller.etag:
        headers["If-None-Match"] = poller.etag
    started = time.perf_counter()
    try:
        response = await poller.http.get(STATE_URL, headers=headers)
        status = response.status_code
        if status == 200:
            poller.etag = response.headers["ETag"]
    except httpx.HTTPError:
        status = 0  # a refused or dropped connection counts as a failed poll
    return (time.perf_counter() - started) * 1000, status


async def _poll_for(pollers: list[Poller], seconds: float, samples: PollSamples) -> None:
    """Each poller once per second, their starts spread over the second."""
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    end = start + seconds

    async def one(i: int, poller: Poller) -> None:
        n = 0
        while (due := start + i / len(pollers) + n) < end:
            await asyncio.sleep(due - loop.time())
            samples.lag_ms.append((loop.time() - due) * 1000)
            samples.at.append(time.perf_counter())
            ms, status = await _poll(poller)
            samples.ms.append(ms)
            samples.statuses[status] += 1
            n += 1

    samples.started = time.perf_counter()
    await asyncio.gather(*(one(i, p) for i, p in enumerate(pollers)))
    samples.ended = time.perf_counter()


async def polling(servers: list[Server], agents: list[BenchAgent], shape: Shape,
                  stats: DbTransactions) -> dict:
    import httpx

    tls = ssl.create_default_context()  # unused on http://, but httpx builds one per client unless given
    pollers = [Poller(agent=a, http=httpx.AsyncClient(
        base_url=servers[i % len(servers)].url, timeout=30, verify=tls,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))) for i, a in enumerate(agents)]
    try:
        # Connections, imports and thread pools of both processes, and every poller's first ETag.
        await _poll_for(pollers, shape.warmup_s, PollSamples())
        changer = PresenceChanger(agents, shape.changes_per_s)
        await asyncio.to_thread(changer.start)
        before = await asyncio.to_thread(stats.settled)
        meter = CpuMeter(servers)
        meter.start()
        changer.begin()
        samples = PollSamples()
        await _poll_for(pollers, shape.poll_s, samples)
        cpu = meter.stop(samples.requests)
        await asyncio.to_thread(changer.stop)
        after = await asyncio.to_thread(stats.settled)
    finally:
        await asyncio.gather(*(p.http.aclose() for p in pollers))
    own = changer.transactions
    server_transactions = after - before - own
    polls = samples.requests
    return {
        "agents": len(agents), "requests": polls,
        "p50_ms": round(percentile(samples.ms, 50), 2), "p99_ms": round(percentile(samples.ms, 99), 2),
        "rps": round(polls / (samples.ended - samples.started), 1),
        "db_queries_per_poll": round(server_transactions / max(1, polls), 4),
        "polls_200": samples.statuses[200], "polls_304": samples.statuses[304],
        "poll_errors": sum(samples.error_statuses().values()),
        "poll_error_statuses": samples.error_statuses(),
        "presence_changes": changer.changes, "changed_agents": changer.touched,
        "db_transactions_server": server_transactions, "db_transactions_bench": own,
        **cpu,
        # The p99 of each 10 s of the phase: a spike in one window is the shared machine, a high
        # figure in all of them is the server.
        "p99_ms_by_10s": samples.p99_by_window(10.0),
        "client_lag_p99_ms": round(percentile(samples.lag_ms, 99), 2),
    }


# Phase 2: push --------------------------------------------------------------------------------

def offer_maker(conn, batch_size: int) -> None:
    """In a child process, as a Celery worker would: one engine batch on "go"; sends back when it
    began, committed and finished its commit hooks, and how many offers it made."""
    from django.db import connection, transaction

    from apps.assignment import counters, realtime
    from apps.assignment.services import assignment_batch_run

    try:
        connection.ensure_connection()
        counters._client().ping()
        realtime._client().ping()
        conn.send("ready")
        conn.recv()
        go = time.monotonic()
        stamp: dict[str, float] = {}
        with transaction.atomic():
            # Registered before the engine's, so it runs first once the transaction commits: the
            # moment of the commit, before the engine's hooks send the offered agents' states.
            transaction.on_commit(lambda: stamp.setdefault("commit", time.monotonic()))
            result = assignment_batch_run(batch_size=batch_size)
        conn.send({"go": go, "commit": stamp["commit"], "hooks_done": time.monotonic(),
                   "offered": result.offered, "claimed": result.claimed})
    except BaseException as exc:
        conn.send({"error": repr(exc)})
    finally:
        connection.close()
        conn.close()


@dataclass
class Socket:
    """One client's websocket: when its state arrived after connecting, when the state with its
    offer arrived, and the close code if the server closed it before that."""

    connected_at: float = 0.0
    received_at: float | None = None
    close_code: int | None = None


async def _socket_client(url: str, agent: BenchAgent, origin: str, gate: asyncio.Semaphore,
                         connected) -> Socket:
    from websockets.asyncio.client import connect

    outcome = Socket()
    async with gate:
        ws = await connect(url, additional_headers={"Cookie": agent.cookie, "Origin": origin},
                           open_timeout=120, ping_interval=None, close_timeout=5)
        try:
            first = json.loads(await asyncio.wait_for(ws.recv(), 60))
        except BaseException:
            await ws.close()
            raise
    try:
        if first.get("type") != "state" or first["state"].get("offers"):
            raise RuntimeError(f"agent {agent.id}: unexpected first message {first}")
        outcome.connected_at = time.monotonic()
        connected()
        async for raw in ws:
            message = json.loads(raw)
            if message.get("type") == "state" and message["state"].get("offers"):
                outcome.received_at = time.monotonic()
                return outcome
        outcome.close_code = ws.close_code
        return outcome
    finally:
        await ws.close()


async def pushing(servers: list[Server], agents: list[BenchAgent], shape: Shape, conn) -> dict:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(shape.connect_concurrency)
    everyone = asyncio.Event()
    count = [0]

    def connected() -> None:
        count[0] += 1
        if count[0] == len(agents):
            everyone.set()

    tasks = []
    for i, agent in enumerate(agents):
        server = servers[i % len(servers)]
        url = server.url.replace("http://", "ws://") + SOCKET_PATH
        tasks.append(asyncio.ensure_future(_socket_client(url, agent, server.url, gate, connected)))
    waiter = asyncio.ensure_future(everyone.wait())
    try:
        started = time.perf_counter()
        while not everyone.is_set():
            live = [t for t in tasks if not t.done()]
            done, _pending = await asyncio.wait([waiter, *live], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task is not waiter and task.exception() is not None:
                    raise task.exception()  # a client that could not connect
        connect_s = time.perf_counter() - started
        conn.send("go")
        made = await loop.run_in_executor(None, conn.recv)
        if "error" in made:
            raise RuntimeError(f"the engine batch failed: {made['error']}")
        await asyncio.wait(tasks, timeout=60)
    finally:
        waiter.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(waiter, *tasks, return_exceptions=True)
    sockets = [t.result() for t in tasks if not t.cancelled() and t.exception() is None]
    ms = [(s.received_at - made["commit"]) * 1000 for s in sockets if s.received_at is not None]
    closed = Counter(str(s.close_code) for s in sockets if s.received_at is None and s.close_code is not None)
    idle = [made["commit"] - s.connected_at for s in sockets if s.close_code is not None]
    return {
        "push_clients": len(agents), "push_offers": made["offered"], "push_received": len(ms),
        "push_missing": len(agents) - len(ms),
        "push_p50_ms": round(percentile(ms, 50), 1), "push_p99_ms": round(percentile(ms, 99), 1),
        "push_max_ms": round(max(ms, default=0.0), 1),
        "push_commit_hooks_ms": round((made["hooks_done"] - made["commit"]) * 1000, 1),
        "push_engine_ms": round((made["commit"] - made["go"]) * 1000, 1),
        # Sockets the server closed before their offer came, by close code, and how long the
        # longest-waiting of them had been open without a message when the offers committed.
        "push_sockets_closed": dict(closed),
        "push_closed_idle_max_s": round(max(idle, default=0.0), 2),
        "ws_connect_s": round(connect_s, 2),
    }


def _run_async(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    # The client's own overhead per request and message is smaller on uvloop.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


# Run ------------------------------------------------------------------------------------------

def run(shape: Shape, db_name: str) -> dict:
    import logging

    import redis
    from django.conf import settings
    from django.db import connections
    from django.utils import timezone

    from apps.assignment import realtime
    from apps.assignment.models import Agent

    # httpx logs every request at INFO: formatting those lines would be the client's main cost.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    loadavg = os.getloadavg()[0]
    started = time.perf_counter()
    agents = build(max(shape.pollers, shape.ws_clients))
    build_s = time.perf_counter() - started
    settle_client_heap()
    connections.close_all()  # its counters reported now, before the phase's first reading
    stats = DbTransactions(db_name)
    servers = [Server(db_name, n) for n in range(2)]
    child = worker = None
    try:
        for server in servers:
            server.wait_ready()
        polled = _run_async(polling(servers, agents[:shape.pollers], shape, stats))

        # The changed agents back to available, so the engine offers every agent one case.
        changed = polled.pop("changed_agents")
        Agent.objects.filter(pk__in=changed).update(presence="available",
                                                    heartbeat_at=timezone.now() + timezone.timedelta(hours=1))
        realtime.agent_state_publish(changed)

        # Phase 1's presence changes may have queued engine batches: none may run before ours.
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
        worker = Worker(db_name)
        worker.wait_ready()
        worker.warm([a.id for a in agents[:shape.ws_clients]])

        # Forked with no connection open and no event loop running; the child connects afresh.
        connections.close_all()
        ctx = multiprocessing.get_context("fork")
        parent_end, child_end = ctx.Pipe()
        child = ctx.Process(target=offer_maker, args=(child_end, shape.ws_clients))
        child.start()
        if parent_end.recv() != "ready":
            raise RuntimeError("the engine process did not start")
        pushed = _run_async(pushing(servers, agents[:shape.ws_clients], shape, parent_end))
        failed = polled["poll_errors"] or pushed["push_missing"]
        failures = "\n".join(p.log_tail() for p in (*servers, worker)) if failed else ""
    finally:
        if child is not None:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
        if worker is not None:
            worker.stop()
        for server in servers:
            server.stop()
        stats.close()
    if failures:  # last on stderr, where a failing run's tail is read
        print(f"the servers' logs end with:\n{failures}", file=sys.stderr)
    result = {**polled, **pushed}
    goals_met = {name: result[name] < goal for name, goal in GOALS.items()}
    goals_met["push_p99_ms"] &= not pushed["push_missing"]  # a lost push is no fast push
    return {
        "agents": result.pop("agents"), "requests": result.pop("requests"),
        "p50_ms": result.pop("p50_ms"), "p99_ms": result.pop("p99_ms"), "rps": result.pop("rps"),
        "db_queries_per_poll": result.pop("db_queries_per_poll"),
        "push_clients": result.pop("push_clients"),
        "push_p50_ms": result.pop("push_p50_ms"), "push_p99_ms": result.pop("push_p99_ms"),
        "goals_met": goals_met,
        **result,
        "poll_s": shape.poll_s, "server": "2 x uvicorn config.asgi:application",
        "build_s": round(build_s, 1), "loadavg_1m_before": round(loadavg, 2),
    }


if __name__ == "__main__":
    main()
