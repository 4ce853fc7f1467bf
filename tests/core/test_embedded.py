"""The embedded PostgreSQL and Redis: start, join, reuse, crash recovery, clean stop.

Each test uses its own var directory, so it never disturbs the services of the test run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
import redis

from config import embedded
from tests.utils.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

START = """
import json, sys, time
from config import embedded
services = embedded.ensure(postgres=True, redis=True)
print(json.dumps({"db": services.database_url, "redis": services.redis_url, "owner": embedded.is_owner()}),
      flush=True)
if len(sys.argv) > 1 and sys.argv[1] == "hold":
    time.sleep(600)
"""


def _env(var: Path) -> dict[str, str]:
    return {**os.environ, "CASEHUB_VAR_DIR": str(var), "CASEHUB_EMBEDDED_QUIET": "1"}


def _run(var: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", START], cwd=ROOT, env=_env(var), capture_output=True,
                         text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _hold(var: Path) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", START, "hold"], cwd=ROOT, env=_env(var),
                            stdout=subprocess.PIPE, text=True)
    return proc, json.loads(proc.stdout.readline())


def _pg(url: str):
    return psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True)


def _running(var: Path) -> tuple[bool, bool]:
    pg = embedded._postmaster_pid(var / "postgres") is not None
    return pg, embedded._redis_state(var) is not None


def test_second_process_joins_and_the_owner_stops_everything(tmp_path):
    owner, urls = _hold(tmp_path)
    try:
        assert urls["owner"] is True
        joiner = _run(tmp_path)
        # The second process connected to the same servers and did not take them over...
        assert joiner["db"] == urls["db"] and joiner["redis"] == urls["redis"]
        assert joiner["owner"] is False
        # ...so its exit left them running.
        assert _running(tmp_path) == (True, True)
        with _pg(urls["db"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        owner.send_signal(signal.SIGTERM)
        owner.wait(60)
    assert _running(tmp_path) == (False, False)


def test_restart_reuses_data(tmp_path):
    first = _run(tmp_path)  # owner exits: services stop
    assert _running(tmp_path) == (False, False)
    owner, urls = _hold(tmp_path)
    try:
        with _pg(urls["db"]) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
        redis.Redis.from_url(urls["redis"]).set("kept", "yes")
    finally:
        owner.send_signal(signal.SIGTERM)
        owner.wait(60)
    again = _run(tmp_path)
    assert again["db"] == first["db"]
    owner, urls = _hold(tmp_path)
    try:
        with _pg(urls["db"]) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
        assert redis.Redis.from_url(urls["redis"]).get("kept") == b"yes"
    finally:
        owner.send_signal(signal.SIGTERM)
        owner.wait(60)


def test_crash_leaves_stale_files_that_the_next_start_handles(tmp_path):
    owner, urls = _hold(tmp_path)
    with _pg(urls["db"]) as conn:
        conn.execute("CREATE TABLE survived (v int)")
        conn.execute("INSERT INTO survived VALUES (7)")
    pg_pid = embedded._pg_info(tmp_path / "postgres").pid
    redis_pid = json.loads((tmp_path / "redis" / "redis.json").read_text())["pid"]
    # A hard crash of everything: owner, database and Redis die without cleaning up.
    for pid in (owner.pid, pg_pid, redis_pid):
        os.kill(pid, signal.SIGKILL)
    owner.wait(10)
    wait_for(lambda: not embedded._pid_alive(pg_pid), "the killed postmaster to be gone")
    assert (tmp_path / "postgres" / "postmaster.pid").exists()
    assert (tmp_path / "redis" / "redis.json").exists()

    owner, urls = _hold(tmp_path)
    try:
        assert urls["owner"] is True
        with _pg(urls["db"]) as conn:
            assert conn.execute("SELECT v FROM survived").fetchone() == (7,)
        assert redis.Redis.from_url(urls["redis"]).ping()
    finally:
        owner.send_signal(signal.SIGTERM)
        owner.wait(60)
    assert _running(tmp_path) == (False, False)


def test_orphaned_services_are_adopted_and_stopped(tmp_path):
    owner, urls = _hold(tmp_path)
    owner.send_signal(signal.SIGKILL)  # the owner dies; the servers keep running
    owner.wait(10)
    assert _running(tmp_path) == (True, True)
    adopter = _run(tmp_path)
    assert adopter["owner"] is True and adopter["db"] == urls["db"]
    assert _running(tmp_path) == (False, False)


def test_secret_key_is_required_outside_the_embedded_mode(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SECRET_KEY"}
    env.update(DATABASE_URL="postgres://nobody@127.0.0.1:1/none", REDIS_URL="redis://127.0.0.1:1/0",
               CASEHUB_VAR_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode != 0
    assert "DJANGO_SECRET_KEY" in proc.stderr
    # With URLs set, nothing embedded was started.
    assert not (tmp_path / "postgres").exists() and not (tmp_path / "redis").exists()


def test_a_service_brought_back_while_its_owner_lives_stays_the_owners(tmp_path):
    owner, urls = _hold(tmp_path)
    try:
        redis_pid = json.loads((tmp_path / "redis" / "redis.json").read_text())["pid"]
        os.kill(redis_pid, signal.SIGKILL)
        wait_for(lambda: embedded.service_pid("redis", tmp_path) is None, "the killed Redis to be gone")
        joiner = _run(tmp_path)
        # Back on the port the owner's clients know, and still the owner's: the joiner's exit
        # stopped nothing.
        assert joiner["redis"] == urls["redis"] and joiner["owner"] is False
        assert _running(tmp_path) == (True, True)
        assert redis.Redis.from_url(urls["redis"]).ping()
    finally:
        owner.send_signal(signal.SIGTERM)
        owner.wait(60)
    assert _running(tmp_path) == (False, False)


SUPERVISE = """
import json, time
from config import embedded
embedded.ensure(postgres=True, redis=True)
print(json.dumps(embedded.stack_register(url="http://127.0.0.1:1/")), flush=True)
time.sleep(600)
"""


def test_an_owner_leaves_its_services_to_a_live_stack_which_stops_them(tmp_path):
    owner, urls = _hold(tmp_path)
    with open(tmp_path / "stack.err", "w") as err:
        stack = subprocess.Popen([sys.executable, "-c", SUPERVISE], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=err, text=True, env={**_env(tmp_path), "CASEHUB_EMBEDDED_QUIET": "0"})
    try:
        assert json.loads(stack.stdout.readline())["pid"] == stack.pid
        owner.send_signal(signal.SIGTERM)
        owner.wait(60)
        # The owner started both but handed them over instead of stopping them under the stack.
        assert _running(tmp_path) == (True, True)
        owners = json.loads((tmp_path / "owner.json").read_text())
        assert {entry["pid"] for entry in owners.values()} == {stack.pid}

        # `config.embedded stop` asks the stack to stop, and the stack stops what it now owns.
        subprocess.run([sys.executable, "-m", "config.embedded", "stop"], cwd=ROOT, env=_env(tmp_path),
                       timeout=120, check=True)
        assert stack.wait(30) != 0
        assert _running(tmp_path) == (False, False)
        assert "Redis stopped" in (tmp_path / "stack.err").read_text()
    finally:
        if stack.poll() is None:
            stack.kill()
            stack.wait(10)
        if owner.poll() is None:
            owner.kill()
            owner.wait(10)
