"""The supervisor behind `make run`: keeps its child processes and the embedded services up,
restarting what dies with backoff, and stops everything in order on Ctrl-C or a crash loop."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from config import embedded

log = logging.getLogger("casehub.supervisor")

TICK_S = 0.2
SERVICE_CHECK_S = 1.0
STOP_TIMEOUT_S = 20.0
PR_SET_PDEATHSIG = 1
# Looked up once here: the forked child, before exec, should run as little Python as it can.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


@dataclass(frozen=True)
class RestartPolicy:
    first_delay: float = 0.5
    max_delay: float = 30.0
    stable_after: float = 30.0  # up at least this long: the next restart waits first_delay again
    limit: int = 5  # more restarts than this within `window` is a crash loop
    window: float = 60.0


class CrashLoop(Exception):
    pass


class Unit:
    """Something kept up, and its restart arithmetic; Child and Service add how to start one
    (`start()`) and how to tell it died (`death(now)`)."""

    def __init__(self, name: str, policy: RestartPolicy):
        self.name = name
        self.policy = policy
        self.pid: int | None = None
        self.up_since: float | None = None
        self.restart_at: float | None = None  # set while it waits to be started again
        self.delay = 0.0
        self.deaths: deque[float] = deque()

    def schedule_restart(self, now: float) -> float:
        """Count a death and return the delay before the next start; raise CrashLoop when it
        died too often lately."""
        policy = self.policy
        self.deaths.append(now)
        while now - self.deaths[0] > policy.window:
            self.deaths.popleft()
        if len(self.deaths) > policy.limit:
            raise CrashLoop
        stable = self.up_since is not None and now - self.up_since >= policy.stable_after
        self.delay = policy.first_delay if stable or not self.delay else min(self.delay * 2, policy.max_delay)
        self.up_since = None
        self.restart_at = now + self.delay
        return self.delay

class Child(Unit):
    def __init__(self, name: str, argv: list[str], *, cwd: Path, policy: RestartPolicy,
                 env: dict[str, str] | None = None):
        super().__init__(name, policy)
        self.argv = argv
        self.cwd = cwd
        self.env = {**os.environ, **env} if env else None
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        # Its own process group: Ctrl-C in the terminal reaches the supervisor only, which
        # then stops the children before the services they use.
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, start_new_session=True,
                                     preexec_fn=_die_with_parent if _prctl else None)
        self.pid = self.proc.pid

    def death(self, now: float) -> str | None:
        code = self.proc.poll() if self.proc else None
        if code is None:
            return None
        self._kill_group()  # a dead worker's pool processes must not linger
        return f"signal {_signal_name(-code)}" if code < 0 else f"exit code {code}"

    def terminate(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, deadline: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in time; killing it", self.name, extra={"unit": self.name})
        self._kill_group()
        self.proc.wait()

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class Service(Unit):
    """An embedded server (PostgreSQL, Redis), restarted where its clients expect it."""

    def __init__(self, name: str, *, policy: RestartPolicy):
        super().__init__(name, policy)
        self.pid = embedded.service_pid(name)
        self.next_check = 0.0

    def start(self) -> None:
        pid = embedded.restart(self.name)
        if pid is None:
            raise RuntimeError("it did not come up")
        self.pid = pid

    def death(self, now: float) -> str | None:
        if now < self.next_check:
            return None
        self.next_check = now + SERVICE_CHECK_S
        pid = embedded.service_pid(self.name)
        if pid is not None:
            self.pid = pid
            return None
        return f"pid {self.pid} is gone"


class Supervisor:
    def __init__(self, commands: dict[str, list[str]], *, cwd: Path, services: list[str],
                 policy: RestartPolicy | None = None, env: dict[str, str] | None = None):
        """`env`: variables every child gets on top of this process's environment."""
        policy = policy or RestartPolicy()
        self.policy = policy
        self.children = [Child(name, argv, cwd=cwd, policy=policy, env=env)
                         for name, argv in commands.items()]
        self.services = [Service(name, policy=policy) for name in services]
        self.failure: str | None = None
        self._stop_signal: int | None = None

    def run(self) -> int:
        """Keep everything up until SIGINT/SIGTERM (returns 0) or a crash loop (returns 1),
        then stop the children. The services are the caller's to stop, after this returns."""
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        now = time.monotonic()
        for service in self.services:
            service.up_since = now
        for child in self.children:
            self._start(child, now)
        try:
            while self._stop_signal is None and self.failure is None:
                self._tick(time.monotonic())
                time.sleep(TICK_S)
        finally:
            if self._stop_signal is not None:
                log.info("stopping on %s", _signal_name(self._stop_signal))
            self._stop_children()
        return 1 if self.failure else 0

    def _request_stop(self, signum, frame) -> None:
        self._stop_signal = signum

    def _tick(self, now: float) -> None:
        # Services first: a child that died with its database comes back to a running one.
        for unit in [*self.services, *self.children]:
            if unit.restart_at is None:
                reason = unit.death(now)
                if reason is not None:
                    self._died(unit, reason, now)
            elif now >= unit.restart_at:
                self._start(unit, now)
            if self.failure or self._stop_signal is not None:
                return

    def _died(self, unit: Unit, reason: str, now: float) -> None:
        extra = {"unit": unit.name, "unit_pid": unit.pid, "reason": reason}
        try:
            delay = unit.schedule_restart(now)
        except CrashLoop:
            self.failure = (f"{unit.name} keeps dying: {len(unit.deaths)} times within "
                            f"{self.policy.window:.0f}s (last: {reason})")
            log.error("%s; stopping everything", self.failure, extra={**extra, "crash_loop": True})
            return
        log.warning("%s died (%s); restarting in %.1fs", unit.name, reason, delay,
                    extra={**extra, "restart_in_s": delay})

    def _start(self, unit: Unit, now: float) -> None:
        restarting = unit.restart_at is not None
        try:
            unit.start()
        except Exception as exc:  # any failure to start is one more death
            self._died(unit, f"could not start: {exc}", now)
            return
        unit.restart_at = None
        unit.up_since = now
        log.info("%s %s (pid %s)", unit.name, "restarted" if restarting else "started", unit.pid,
                 extra={"unit": unit.name, "unit_pid": unit.pid})
        embedded.stack_update(children={child.name: child.pid for child in self.children if child.proc})

    def _stop_children(self) -> None:
        for child in self.children:
            child.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in self.children:
            child.wait(deadline)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _die_with_parent() -> None:
    # Runs in the child before exec (Linux): should the supervisor itself be killed, its
    # children get SIGTERM instead of living on, holding the port the next `make run` needs.
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
