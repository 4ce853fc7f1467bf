"""`make run`: migrate, seed the demo once, then supervise web, worker(s) and beat in the foreground.

One stack per var directory: a second one refuses before touching anything. The supervisor
restarts a child or an embedded service that dies (config/supervisor.py); Ctrl-C stops the
children first and the services this process owns last.
"""

from __future__ import annotations

import json
import shlex
import socket
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from apps.core.demo import DEMO_LOGINS
from config import embedded
from config.supervisor import RestartPolicy, Supervisor


class Command(BaseCommand):
    help = "Run the whole system: ASGI web + websockets, Celery worker(s) and Celery beat."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-seed", action="store_true")
        parser.add_argument("--workers", type=_positive_int, default=1, metavar="N",
                            help="Celery worker processes to run, each supervised on its own "
                                 "(make run WORKERS=N)")
        parser.add_argument(
            "--command", action="append", dest="commands", metavar="NAME=COMMAND", type=_named_command,
            help="supervise this command instead of the web server, worker and beat (repeatable)",
        )
        parser.add_argument("--restart-limit", type=int, default=RestartPolicy.limit,
                            help="a process restarted more often than this within the window is "
                                 "crash-looping: everything stops")
        parser.add_argument("--restart-window", type=float, default=RestartPolicy.window, metavar="SECONDS")

    def handle(self, *args, host, port, no_seed, workers, commands, restart_limit, restart_window, **options):
        # Before anything else: a second stack on the same var dir must not migrate under the first.
        try:
            stack = embedded.stack_register(url=f"http://{host}:{port}/")
        except embedded.StackRunning as exc:
            raise CommandError(str(exc)) from None
        try:
            call_command("migrate", interactive=False, verbosity=0)
            # The demo health spec (seeded next) checks /healthz where this stack serves, unless the
            # address people reach it at was configured.
            settings.CASEHUB_BASE_URL = settings.CASEHUB_BASE_URL or f"http://{host}:{port}"
            if not no_seed:
                call_command("seed_demo", no_progress=True)
            children, env = (dict(commands), {}) if commands else _commands(host, port, workers)
            supervisor = Supervisor(
                children, cwd=settings.BASE_DIR, env=env,
                services=stack["services"], policy=RestartPolicy(limit=restart_limit, window=restart_window),
            )
            self._print_banner(host, port)
            exit_code = supervisor.run()
        finally:
            embedded.release()
            embedded.stack_unregister()
        if exit_code:
            self.stderr.write(f"Casehub stopped: {supervisor.failure}")
            sys.exit(exit_code)
        self.stdout.write("Casehub stopped.")

    def _print_banner(self, host, port):
        self.stdout.write(self.style.SUCCESS(f"\nCasehub is running: http://{host}:{port}/admin/"))
        self.stdout.write(f"  API docs:  http://{host}:{port}/api/docs/")
        self.stdout.write(f"  readiness: http://{host}:{port}/readyz")
        self.stdout.write("  demo logins (user / password):")
        for username, password, roles, superuser in DEMO_LOGINS:
            role = "superuser" if superuser else ", ".join(roles)
            self.stdout.write(f"    {username} / {password}  ({role})")
        self.stdout.write("    agent1..agent8 / agent  (agent)    merchant1..merchant5 / merchant (API)")
        self.stdout.write("Press Ctrl-C to stop.\n")


def _commands(host, port, workers: int = 1) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The children to supervise, and the environment they get on top of this one."""
    py = sys.executable
    commands = {
        "web": [py, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", str(port),
                "--lifespan", "on", "--no-access-log", "--log-config", str(_uvicorn_log_config())],
    }
    # Each worker is a child of its own (restarted on its own) with its own node name, as
    # separate hosts would be; "worker" stays the first one's name.
    for n in range(1, workers + 1):
        suffix = "" if n == 1 else f"-{n}"
        commands[f"worker{suffix}"] = [
            py, "-m", "celery", "-A", "config", "worker", "-Q", ",".join(settings.CELERY_QUEUES_ALL),
            "-c", "2", "-n", f"casehub{suffix}@%h", "--loglevel", "INFO",
        ]
    commands["beat"] = [py, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                        "-S", "django_celery_beat.schedulers:DatabaseScheduler"]
    env = {}
    if not settings.CASEHUB_CONTEXT_URL and not settings.CASEHUB_CONTEXT_TYPE_URLS:
        # No outside systems configured: the demo stand-in serves them, on a loopback port of its own.
        demo_port = _free_port()
        commands["context-demo"] = [py, "-m", "apps.cases.context.demo_service", "--port", str(demo_port)]
        env["CASEHUB_CONTEXT_URL"] = f"http://127.0.0.1:{demo_port}"
    return commands, env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def _named_command(value: str) -> tuple[str, list[str]]:
    name, sep, command = value.partition("=")
    if not sep or not name or not command.strip():
        raise ValueError(value)
    return name, shlex.split(command)


def _uvicorn_log_config():
    """Uvicorn's own loggers in the project's JSON format (it sets up logging before Django)."""
    config = {**settings.LOGGING, "loggers": {
        **settings.LOGGING["loggers"],
        "uvicorn": {"handlers": ["stdout"], "level": settings.LOG_LEVEL, "propagate": False},
    }}
    path = embedded.var_dir() / "uvicorn-logging.json"
    path.write_text(json.dumps(config))
    return path
