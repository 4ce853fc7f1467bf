"""Services schedule runs through the Celery task looked up by name, in any process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from apps.inventory import services
from apps.inventory.models import RunStatus
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items
from tests.utils.processes import BASE_DIR, worker_env

# What a web process does: Django set up, the services imported, never the tasks module.
WEB_PROCESS = """
import json, sys
import django
django.setup()
from celery import current_app
from apps.inventory.services import scheduling
imported_before = "apps.inventory.tasks" in sys.modules
task = scheduling.task_by_name(scheduling.INGESTION_RUN_PROCESS)
route = current_app.amqp.router.route({}, task.name, (), {}, task)
function = f"{task.run.__module__}.{task.run.__name__}"
print(json.dumps({"imported_before": imported_before, "function": function, "queue": route["queue"].name}))
"""


@pytest.mark.django_db
def test_a_submitted_feed_is_processed_by_the_task_once_its_run_commits(
    monkeypatch, django_capture_on_commit_callbacks
):
    from config.celery import app

    monkeypatch.setitem(app.conf, "task_always_eager", True)  # the task runs here, at once
    store = StoreFactory()
    skus = catalog_create(store.merchant, 3)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        run = services.feed_submit_json(store=store, body=feed_body(feed_items(skus)))
        run.refresh_from_db()
        assert run.status == RunStatus.QUEUED  # nothing is sent before the commit
    assert len(callbacks) == 1
    run.refresh_from_db()
    assert (run.status, run.created) == (RunStatus.SUCCEEDED, 3)


def test_a_process_that_never_imported_the_tasks_finds_the_task_routed_to_the_ingestion_queue():
    proc = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS], cwd=BASE_DIR, env=worker_env(), capture_output=True, text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    assert found == {
        "imported_before": False,
        "function": "apps.inventory.tasks.ingestion_run_process",
        "queue": "ingestion",
    }
