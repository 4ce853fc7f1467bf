"""The README's `make run`, for real: one stack, started once, serves, heals and stops.

The tests share that stack and run in file order: it serves the admin; a second stack on its
folder is refused; each child and embedded service killed with SIGKILL comes back; a feed
interrupted by SIGKILL of the worker, Redis and PostgreSQL completes exactly once; a bystander
neither starts nor stops services; Ctrl-C stops everything in order. Last, a crash loop stops
a stack with a failure.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from config import embedded
from tests.utils.processes import scratch_var_dir
from tests.utils.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

BYSTANDER = """
import json, os
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
import django
django.setup()
from django.conf import settings
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("SELECT 1")
print(json.dumps({"redis": settings.REDIS_URL}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Stack:
    """`make run` on a var directory of its own, its output in a log file."""

    def __init__(self, var: Path, log_path: Path):
        self.var = var
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {k: v for k, v in os.environ.items()
                    if k not in {"PYTEST_VERSION", "DJANGO_ALLOW_ASYNC_UNSAFE", "CASEHUB_DB_NAME",
                                 "CASEHUB_EMBEDDED_QUIET"}}
        self.env["CASEHUB_VAR_DIR"] = str(var)
        # Feeds run slowly enough to be killed mid-run (demo feeds are one batch each), and have
        # attempts to spare for every fault the feed test injects.
        self.env.update(INVENTORY_THROTTLE_S="0.4", INVENTORY_MAX_ATTEMPTS="6")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(["make", "run", f"PORT={self.port}"], cwd=ROOT, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        return self.proc.wait(90)

    def output(self) -> str:
        return self.log_path.read_text()

    def supervisor_logs(self) -> list[dict]:
        return [r for r in _json_lines(self.output()) if r.get("logger") == "casehub.supervisor"]

    def record(self) -> dict:
        return json.loads((self.var / "stack.json").read_text())

    def ready(self) -> bool:
        assert self.proc.poll() is None, self.output()[-3000:]
        try:
            return httpx.get(f"{self.url}/readyz", timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, what: str, timeout: float = 90) -> None:
        wait_for(self.ready, what, timeout=timeout, interval=0.25)


def _json_lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def _pg(pgdata: Path):
    return psycopg.connect(host=str(pgdata), user="postgres", dbname=embedded.DB_NAME, autocommit=True)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with scratch_var_dir() as var:
        running = Stack(var, tmp_path_factory.mktemp("make-run") / "make-run.log")
        running.start()
        try:
            running.wait_ready("make run to be ready", timeout=240)
            yield running
        finally:
            running.stop()


def test_make_run_serves_admin(stack):
    output = stack.output()
    assert f"{stack.url}/admin/" in output and "ops / ops" in output  # URL and demo logins printed
    # Structured logs: the web server's own lines are JSON records too, not plain text.
    records = _json_lines(output)
    assert any(r["logger"].startswith("uvicorn") and "Uvicorn running" in r["message"] for r in records)
    assert not any(line.startswith("INFO:") for line in output.splitlines())

    with httpx.Client(base_url=stack.url, follow_redirects=True, timeout=10) as client:
        login = client.get("/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        home = client.post("/admin/login/?next=/admin/", data={
            "csrfmiddlewaretoken": token, "username": "ops", "password": "ops"},
            headers={"Referer": f"{stack.url}/admin/login/"})
        assert home.status_code == 200
        assert "Log out" in home.text and 'id="user-tools"' in home.text
        # Static files are served too (the admin is usable, not unstyled).
        assert client.get("/static/admin/css/base.css").status_code == 200
        # The demo health spec checks the address this stack serves (a free port here, not 8000).
        spec = client.get("/api/v1/health/specs/platform/")
        assert spec.status_code == 200, spec.text[:500]
        assert f"{stack.url}/healthz" in spec.json()["source"]


def test_a_second_stack_in_the_same_folder_is_refused_before_it_migrates(stack):
    record = stack.record()
    # An unreachable database: a second stack that went as far as migrating would fail on it
    # instead of naming the running one.
    env = {**stack.env, "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}
    second = subprocess.run(["make", "run", f"PORT={_free_port()}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert second.returncode != 0
    assert "Casehub is already running" in second.stderr, second.stderr
    assert f"pid {record['pid']}" in second.stderr and f"{stack.url}/" in second.stderr
    assert f"since {record['since']}" in second.stderr
    assert "Traceback" not in second.stderr and "migrat" not in second.stdout.lower()
    assert stack.record()["pid"] == record["pid"] and stack.ready()


def test_killed_children_come_back(stack):
    for name in ("worker", "beat", "web"):
        old = stack.record()["children"][name]
        os.kill(old, signal.SIGKILL)
        new = wait_for(lambda name=name, old=old: (pid := stack.record()["children"][name]) != old and pid,
                       f"{name} to be restarted")
        stack.wait_ready(f"readyz once {name} is back")
        logs = [r for r in stack.supervisor_logs() if r.get("unit") == name]
        assert any(r["unit_pid"] == old and r.get("reason") == "signal SIGKILL" and r["restart_in_s"] > 0
                   and f"{name} died (signal SIGKILL); restarting in" in r["message"]
                   for r in logs if "restart_in_s" in r), logs
        assert any(r["message"] == f"{name} restarted (pid {new})" for r in logs), logs


def test_killed_services_come_back_where_they_were_with_their_data(stack):
    pgdata = stack.var / "postgres"
    with _pg(pgdata) as conn:
        conn.execute("CREATE TABLE supervision_kept (v int)")
        conn.execute("INSERT INTO supervision_kept VALUES (42)")
    before = embedded._redis_state(stack.var)
    redis.Redis(host="127.0.0.1", port=before["port"]).set("supervision:kept", "yes")

    os.kill(before["pid"], signal.SIGKILL)
    after = wait_for(lambda: (state := embedded._redis_state(stack.var)) and state["pid"] != before["pid"]
                     and state, "Redis to be restarted")
    assert after["port"] == before["port"]
    assert redis.Redis(host="127.0.0.1", port=after["port"]).get("supervision:kept") == b"yes"

    postmaster = embedded._pg_info(pgdata)
    os.kill(postmaster.pid, signal.SIGKILL)
    restarted = wait_for(lambda: (info := embedded._pg_info(pgdata)) and info.pid != postmaster.pid and info,
                         "PostgreSQL to be restarted")
    assert restarted.socket_dir == postmaster.socket_dir
    with _pg(pgdata) as conn:
        assert conn.execute("SELECT v FROM supervision_kept").fetchone() == (42,)

    stack.wait_ready("readyz once the services are back")
    logs = stack.supervisor_logs()
    restarts = (("redis", before["pid"], after["pid"]), ("postgres", postmaster.pid, restarted.pid))
    for name, old, new in restarts:
        assert any(r.get("unit") == name and r["unit_pid"] == old and "restart_in_s" in r for r in logs), logs
        assert any(r["message"] == f"{name} restarted (pid {new})" for r in logs), logs


def _run_row(pgdata: Path, run_id: int) -> dict | None:
    """The run as the database has it; None while PostgreSQL is down."""
    try:
        with _pg(pgdata) as conn:
            conn.row_factory = psycopg.rows.dict_row
            return conn.execute("""
                SELECT status, attempts, batches_done, items_done, received, created, updated, unchanged,
                    rejected,
                    (SELECT count(*) FROM inventory_itemrejection r WHERE r.run_id = i.id) AS rejection_rows,
                    (SELECT count(DISTINCT sku) FROM inventory_itemrejection r WHERE r.run_id = i.id)
                        AS rejected_skus,
                    (SELECT count(*) FROM inventory_itemrejection r WHERE r.run_id = i.id
                        AND r.sku LIKE 'GHOST-%%') AS ghost_rejections,
                    (SELECT count(*) FROM inventory_inventoryitem t WHERE t.updated_run_id = i.id)
                        AS written_rows
                FROM inventory_ingestionrun i WHERE id = %s""", [run_id]).fetchone()
    except psycopg.OperationalError:
        return None


def test_a_feed_survives_kill_9_of_worker_redis_and_postgres_and_its_retry_creates_nothing(stack):
    pgdata = stack.var / "postgres"
    with _pg(pgdata) as conn:
        store_id, merchant_id = conn.execute(
            "SELECT id, merchant_id FROM inventory_store ORDER BY id LIMIT 1").fetchone()
        skus = [sku for (sku,) in conn.execute(
            "SELECT sku FROM inventory_catalogitem WHERE merchant_id = %s ORDER BY sku", [merchant_id])]
        runs_before = conn.execute("SELECT count(*) FROM inventory_ingestionrun").fetchone()[0]
    # 20 batches of 1,000 (throttled): every catalog SKU at a new price, and SKUs the catalog lacks,
    # each rejected with its reason. Every item must end up written or rejected exactly once.
    items = [{"sku": sku, "price": 7.77, "available": True} for sku in skus]
    items += [{"sku": f"GHOST-{n:05d}", "price": 1.0, "available": True} for n in range(20_000 - len(items))]
    body = json.dumps({"items": items})
    headers = {"Content-Type": "application/json", "Idempotency-Key": "feed-under-faults-1"}
    with httpx.Client(base_url=stack.url, auth=("ops", "ops"), timeout=30) as client:
        first = client.post(f"/api/v1/inventory/stores/{store_id}/feeds/", content=body, headers=headers)
        assert first.status_code == 202, first.text
        run_id = first.json()["run_id"]

        def progressed_past(batches: int):
            return lambda: (row := _run_row(pgdata, run_id)) and row["batches_done"] > batches and row

        row = wait_for(progressed_past(2), "the run to commit three batches", timeout=120)
        os.kill(stack.record()["children"]["worker"], signal.SIGKILL)
        # The run's own heartbeat goes silent; the stale check (beat, every 5 s) queues it again and
        # the restarted worker resumes it after its last committed batch.
        row = wait_for(lambda: (r := _run_row(pgdata, run_id)) and r["attempts"] >= 2
                       and r["batches_done"] > row["batches_done"] and r, "the run to resume", timeout=120)
        os.kill(embedded._redis_state(stack.var)["pid"], signal.SIGKILL)
        row = wait_for(progressed_past(row["batches_done"] + 1), "progress with Redis restarted", timeout=120)
        os.kill(embedded._pg_info(pgdata).pid, signal.SIGKILL)
        row = wait_for(lambda: (r := _run_row(pgdata, run_id)) and r["status"] in ("succeeded", "failed")
                       and r, "the run to finish after PostgreSQL restarted", timeout=180)

        assert row["status"] == "succeeded", row
        assert row["attempts"] >= 2, row
        assert row["items_done"] == row["received"] == len(items), row
        assert row["created"] + row["updated"] + row["unchanged"] + row["rejected"] == len(items), row
        # No batch applied twice across the resumes: one rejection row per rejected item, every
        # unknown SKU rejected once, and every catalog SKU either written by this run or rejected.
        assert row["rejected"] == row["rejection_rows"] == row["rejected_skus"], row
        assert row["ghost_rejections"] == len(items) - len(skus), row
        assert row["written_rows"] + row["rejected"] - row["ghost_rejections"] == len(skus), row

        stack.wait_ready("readyz after the faults")
        retry = client.post(f"/api/v1/inventory/stores/{store_id}/feeds/", content=body, headers=headers)
        assert retry.status_code == 202 and retry.json() == first.json(), retry.text
        assert retry.headers.get("Idempotent-Replayed") == "true"
    with _pg(pgdata) as conn:
        assert conn.execute("SELECT count(*) FROM inventory_ingestionrun").fetchone()[0] == runs_before + 1


def test_a_bystander_waits_for_the_stack_and_stops_nothing(stack, tmp_path):
    supervisor = stack.record()["pid"]
    redis_before = embedded._redis_state(stack.var)
    postmaster = embedded._postmaster_pid(stack.var / "postgres")
    err_path = tmp_path / "bystander.err"
    # The supervisor is paused, so Redis stays down for as long as the test looks.
    os.kill(supervisor, signal.SIGSTOP)
    try:
        os.kill(redis_before["pid"], signal.SIGKILL)
        wait_for(lambda: embedded.service_pid("redis", stack.var) is None, "Redis to die")
        with open(err_path, "w") as err:
            bystander = subprocess.Popen([sys.executable, "-c", BYSTANDER], cwd=ROOT, env=stack.env,
                                         stdout=subprocess.PIPE, stderr=err, text=True)
        wait_for(lambda: "waiting up to" in err_path.read_text() or bystander.poll() is not None,
                 "the bystander to wait for the stack")
        assert f"for make run (pid {supervisor})" in err_path.read_text()
        # It waits instead of starting a Redis of its own, on this port or another.
        assert embedded.service_pid("redis", stack.var) is None
        assert bystander.poll() is None
    finally:
        os.kill(supervisor, signal.SIGCONT)
    out, _ = bystander.communicate(timeout=90)
    assert bystander.returncode == 0, err_path.read_text()
    assert json.loads(out.strip().splitlines()[-1])["redis"] == f"redis://127.0.0.1:{redis_before['port']}/0"

    # Its exit stopped nothing: the stack's services still run and are still the stack's.
    state = embedded._redis_state(stack.var)
    assert state is not None and state["port"] == redis_before["port"]
    assert embedded._postmaster_pid(stack.var / "postgres") == postmaster
    owners = json.loads((stack.var / "owner.json").read_text())
    assert {owner["pid"] for owner in owners.values()} == {supervisor}
    stack.wait_ready("readyz once Redis is back")


def test_ctrl_c_stops_the_children_then_the_services(stack):
    children = stack.record()["children"]
    code = stack.stop()
    output = stack.output()
    # make re-raises the SIGINT it received once its recipe has finished; the supervisor
    # under it must have shut everything down in order.
    assert code in (0, -signal.SIGINT), output[-3000:]
    assert "Casehub stopped." in output and "keeps dying" not in output
    assert not any(embedded._pid_alive(pid) for pid in children.values())
    assert output.rindex("Finished server process") < output.rindex("[embedded] PostgreSQL stopped")
    assert embedded._postmaster_pid(stack.var / "postgres") is None, output[-3000:]
    assert embedded._redis_state(stack.var) is None, output[-3000:]
    assert not (stack.var / "stack.json").exists() and not (stack.var / "owner.json").exists()


def test_a_crash_loop_stops_the_stack_with_a_failure(stack):
    stack.stop()  # the folder's stack, if the test before did not stop it
    crash = f"crash={sys.executable} -c 'raise SystemExit(3)'"
    steady = f"steady={sys.executable} -c 'import time; time.sleep(600)'"
    run = subprocess.run(
        [sys.executable, "manage.py", "runstack", "--port", str(_free_port()), "--no-seed",
         "--restart-limit", "2", "--command", crash, "--command", steady],
        cwd=ROOT, env=stack.env, capture_output=True, text=True, timeout=180,
    )
    assert run.returncode == 1, run.stderr[-3000:]
    assert "Casehub stopped: crash keeps dying: 3 times within 60s (last: exit code 3)" in run.stderr
    logs = [r for r in _json_lines(run.stdout) if r.get("logger") == "casehub.supervisor"]
    assert [r["restart_in_s"] for r in logs if r.get("unit") == "crash" and "restart_in_s" in r] == [0.5, 1.0]
    # Everything stopped with it: the child that was fine and the services.
    steady_pid = next(r["unit_pid"] for r in logs if r.get("unit") == "steady")
    assert not embedded._pid_alive(steady_pid)
    assert embedded._postmaster_pid(stack.var / "postgres") is None
    assert embedded._redis_state(stack.var) is None
