"""How inventory services schedule background work without importing the tasks module: the
Celery task is looked up by its registered name and sent once the transaction commits."""

from __future__ import annotations

from celery import current_app
from django.db import transaction

# shared_task names a task after its module and function; the queue comes from
# CELERY_TASK_ROUTES ("apps.inventory.tasks.*" -> ingestion), by that same name.
INGESTION_RUN_PROCESS = "apps.inventory.tasks.ingestion_run_process"


def task_by_name(name: str):
    """The registered Celery task called `name`.

    Only the celery command (worker, beat) autodiscovers the apps' tasks modules: a web process
    may never have imported this one. Discovering them here, as a worker does at start, sends the
    task with its own options (routes, time limits, eager mode where set) in every process,
    rather than a bare message by name.
    """
    app = current_app
    if name not in app.tasks:
        app.autodiscover_tasks(force=True)
    return app.tasks[name]


def ingestion_run_schedule(*, run_id: int) -> None:
    """Have an ingestion worker process the run once the current transaction commits."""
    task = task_by_name(INGESTION_RUN_PROCESS)
    transaction.on_commit(lambda: task.delay(run_id))
