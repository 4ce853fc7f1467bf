"""`make run`: migrate, seed the demo once, then supervise web, worker and beat in the foreground.

This process owns the embedded PostgreSQL and Redis (started by settings), so Ctrl-C stops
the children first and the services last.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from apps.core.demo import DEMO_LOGINS
from config import embedded


class Command(BaseCommand):
    help = "Run the whole system: ASGI web + websockets, one Celery worker and Celery beat."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--no-seed", action="store_true")

    def handle(self, *args, host, port, no_seed, **options):
        call_command("migrate", interactive=False, verbosity=0)
        if not no_seed:
            call_command("seed_demo", no_progress=True)
        py = sys.executable
        commands = {
            "web": [py, "-m", "uvicorn", "config.asgi:application", "--host", host, "--port", str(port),
                    "--lifespan", "off", "--no-access-log", "--log-config", str(_uvicorn_log_config())],
            "worker": [py, "-m", "celery", "-A", "config", "worker",
                       "-Q", ",".join(settings.CELERY_QUEUES_ALL),
                       "-c", "2", "-n", "casehub@%h", "--loglevel", "INFO"],
            "beat": [py, "-m", "celery", "-A", "config", "beat", "--loglevel", "INFO",
                     "-S", "django_celery_beat.schedulers:DatabaseScheduler"],
        }
        children: dict[str, subprocess.Popen] = {}
        stopping = False

        def request_stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        for name, cmd in commands.items():
            # Own process groups: the supervisor decides the shutdown order, not the terminal.
            children[name] = subprocess.Popen(cmd, cwd=settings.BASE_DIR, start_new_session=True)

        self.stdout.write(self.style.SUCCESS(f"\nCasehub is running: http://{host}:{port}/admin/"))
        self.stdout.write(f"  API docs:  http://{host}:{port}/api/docs/")
        self.stdout.write(f"  readiness: http://{host}:{port}/readyz")
        self.stdout.write("  demo logins (user / password):")
        for username, password, roles, superuser in DEMO_LOGINS:
            role = "superuser" if superuser else ", ".join(roles)
            self.stdout.write(f"    {username} / {password}  ({role})")
        self.stdout.write("    agent1..agent8 / agent  (agent)    merchant1..merchant5 / merchant (API)")
        self.stdout.write("Press Ctrl-C to stop.\n")

        exit_code = 0
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    self.stderr.write(f"{name} exited with {child.returncode}; stopping everything")
                    exit_code = 1
                    stopping = True
                    break
            time.sleep(0.3)

        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for child in children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # The whole group: a worker's pool processes must not outlive it.
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        self.stdout.write("Casehub stopped.")
        if exit_code:
            sys.exit(exit_code)


def _uvicorn_log_config():
    """Uvicorn's own loggers in the project's JSON format (it sets up logging before Django)."""
    config = {**settings.LOGGING, "loggers": {
        **settings.LOGGING["loggers"],
        "uvicorn": {"handlers": ["stdout"], "level": settings.LOG_LEVEL, "propagate": False},
    }}
    path = embedded.var_dir() / "uvicorn-logging.json"
    path.write_text(json.dumps(config))
    return path
