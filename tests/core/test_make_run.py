"""The README's `make run`, for real: start it, wait until ready, log in, stop it with Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from config import embedded

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_make_run_serves_admin_and_stops_cleanly(tmp_path):
    var = tmp_path / "var"
    port = _free_port()
    env = {k: v for k, v in os.environ.items()
           if k not in {"PYTEST_VERSION", "DJANGO_ALLOW_ASYNC_UNSAFE", "CASEHUB_DB_NAME"}}
    env["CASEHUB_VAR_DIR"] = str(var)
    log = open(tmp_path / "make-run.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(["make", "run", f"PORT={port}"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(1)
        log.seek(0)
        output = log.read()
        assert ready is not None and ready.status_code == 200, output[-3000:]
        assert f"{base}/admin/" in output and "ops / ops" in output  # URL and demo logins printed
        # Structured logs: the web server's own lines are JSON records too, not plain text.
        records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        assert any(r["logger"].startswith("uvicorn") and "Uvicorn running" in r["message"] for r in records)
        assert not any(line.startswith("INFO:") for line in output.splitlines())

        with httpx.Client(base_url=base, follow_redirects=True, timeout=10) as client:
            login = client.get("/admin/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
            home = client.post("/admin/login/?next=/admin/", data={
                "csrfmiddlewaretoken": token, "username": "ops", "password": "ops"},
                headers={"Referer": f"{base}/admin/login/"})
            assert home.status_code == 200
            assert "Log out" in home.text and 'id="user-tools"' in home.text
            # Static files are served too (the admin is usable, not unstyled).
            assert client.get("/static/admin/css/base.css").status_code == 200
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        code = proc.wait(90)
        log.close()
    output = (tmp_path / "make-run.log").read_text()
    # make re-raises the SIGINT it received once its recipe has finished; the supervisor
    # under it must have shut everything down in order.
    assert code in (0, -signal.SIGINT), output[-3000:]
    assert "Casehub stopped." in output and "exited with" not in output
    assert embedded._postmaster_pid(var / "postgres") is None, output[-3000:]
    assert embedded._redis_state(var) is None, output[-3000:]
