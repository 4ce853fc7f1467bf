"""A real Celery worker keeps the tenant of the work it is sent: a task queued on commit by a sandbox
request writes in the sandbox, and what a sandbox task calls out to never sees the baggage."""

from __future__ import annotations

import pytest

from apps.core.scheduling import task_send_on_commit
from apps.core.tenancy import SANDBOX, SANDBOX_SCHEMA, tenant_activate
from apps.inventory.models import IngestionRun, InventoryItem, RunStatus
from tests.core.test_sandbox import SANDBOX_BAGGAGE, basic, recording_server, rows, sandbox_truncate
from tests.factories.accounts import MerchantUserFactory
from tests.factories.health import HealthSpecFactory, check_doc
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items
from tests.utils.waiting import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def sandbox_clean(transactional_db):
    sandbox_truncate()
    yield
    sandbox_truncate()


def in_sandbox(query):
    def look():
        with tenant_activate(SANDBOX):
            return query()

    return look


def test_a_feed_posted_to_the_sandbox_is_processed_there_by_a_real_worker(celery_worker, sandbox_clean,
                                                                           api_client):
    with tenant_activate(SANDBOX):
        member = MerchantUserFactory(user__username="sandbox-shop")
        store = StoreFactory(merchant=member.merchant)
        skus = catalog_create(store.merchant, 20)
    response = api_client.post(f"/api/v1/inventory/stores/{store.pk}/feeds/",
                               data=feed_body(feed_items(skus)), content_type="application/json",
                               **SANDBOX_BAGGAGE, **basic("sandbox-shop"))
    assert response.status_code == 202, response.content
    run_id = response.json()["run_id"]

    # The request committed the run and sent its task on commit; the worker found the run in the
    # sandbox (production has no such run) and wrote the items there.
    wait_for(in_sandbox(lambda: IngestionRun.objects.filter(pk=run_id, status=RunStatus.SUCCEEDED).exists()),
             what="the sandbox run")
    assert in_sandbox(lambda: InventoryItem.objects.filter(store_id=store.pk).count())() == 20
    assert rows(SANDBOX_SCHEMA, "inventory_ingestionrun", "id = %s", [run_id]) == 1
    assert not IngestionRun.objects.exists() and not InventoryItem.objects.exists()


def test_a_sandbox_task_calls_out_without_the_baggage(celery_worker, sandbox_clean):
    with recording_server() as (server, url):
        with tenant_activate(SANDBOX):
            params = {"url": url, "headers": {"baggage": "tenant=sandbox,userId=alice", "X-Probe": "1"}}
            spec = HealthSpecFactory(checks=[check_doc("probe", "http", params=params)])
            task_send_on_commit("apps.health.tasks.health_spec_run", spec.pk)
        wait_for(lambda: server.requests, what="the check's request")
        wait_for(lambda: rows(SANDBOX_SCHEMA, "health_checkresult") == 1, what="the sandbox result")
    [received] = server.requests
    assert received["X-Probe"] == "1"
    assert "baggage" not in {name.lower() for name in received}
    assert rows("public", "health_healthspec") == 0 and rows("public", "health_checkresult") == 0
