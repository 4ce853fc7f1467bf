"""How inventory services schedule background work without importing the tasks module: through
the core scheduler (apps/core/scheduling.py), by the task's registered name, after commit."""

from __future__ import annotations

from apps.core.scheduling import task_by_name, task_send_on_commit

# shared_task names a task after its module and function; the queue comes from
# CELERY_TASK_ROUTES ("apps.inventory.tasks.*" -> ingestion), by that same name.
INGESTION_RUN_PROCESS = "apps.inventory.tasks.ingestion_run_process"

__all__ = ["INGESTION_RUN_PROCESS", "ingestion_run_schedule", "task_by_name"]


def ingestion_run_schedule(*, run_id: int) -> None:
    """Have an ingestion worker process the run once the current transaction commits.

    With the broker down the run stays queued, its message unsent: the requeue beat job sends
    it once the run's heartbeat (its submission time) is stale.
    """
    task_send_on_commit(INGESTION_RUN_PROCESS, run_id)
