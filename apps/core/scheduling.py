"""Scheduling Celery work from services and admin: the task is looked up by its registered name
and sent once the transaction commits; a broker outage is logged, never raised into a request
whose data is already committed (each app's requeue job sends that work later)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import partial

import kombu.exceptions
import redis.exceptions
from celery import Task, current_app
from django.db import transaction

logger = logging.getLogger(__name__)

# What a publish raises when the broker cannot be reached: kombu wraps most connection errors in
# OperationalError; the Redis client and the socket layer may still surface their own.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    OSError,
)


def task_by_name(name: str) -> Task:
    """The registered Celery task called `name`.

    Only the celery command (worker, beat) autodiscovers the apps' tasks modules: a web process
    may never have imported one. Discovering them here, as a worker does at start, sends the
    task with its own options (routes, time limits, eager mode where set) in every process,
    rather than a bare message by name.
    """
    app = current_app
    if name not in app.tasks:
        app.autodiscover_tasks(force=True)
    return app.tasks[name]


def _task(task: Task | str) -> Task:
    return task_by_name(task) if isinstance(task, str) else task


def task_send(task: Task | str, *args, **kwargs) -> bool:
    """Send the task now; False (and a warning in the log) when the broker is unreachable.

    How long a send may try is the publish retry policy's (CELERY_TASK_PUBLISH_RETRY_POLICY) and
    the broker connect timeout's: short, so a request never hangs on a broker that is down.
    """
    task = _task(task)
    if task.app.conf.task_always_eager:
        # The task runs here and now: its own errors are the caller's to see, not a broker outage.
        task.apply_async(args, kwargs)
        return True
    try:
        task.apply_async(args, kwargs)
    except BROKER_ERRORS:
        logger.warning(
            "task %s%r not sent: the broker is unreachable; its requeue job sends it later",
            task.name,
            args,
            exc_info=True,
        )
        return False
    return True


def task_send_on_commit(task: Task | str, *args, **kwargs) -> None:
    """Send the task once the current transaction commits (at once outside one)."""
    task = _task(task)
    transaction.on_commit(partial(task_send, task, *args, **kwargs))


def task_send_each_on_commit(task: Task | str, calls: Iterable[tuple]) -> None:
    """Send the task once per argument tuple in `calls`, all from one on-commit callback."""
    task = _task(task)
    calls = list(calls)
    transaction.on_commit(lambda: [task_send(task, *args) for args in calls])
