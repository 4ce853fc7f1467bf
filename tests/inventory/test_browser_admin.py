"""Ops in headless Chromium: a run's progress bar, then the held-price review queue."""

import pytest

from apps.core import demo as core_demo
from apps.core.progress import SILENT
from apps.inventory import services
from apps.inventory.models import IngestionRun, InventoryItem
from tests.factories.inventory import StoreFactory, catalog_create, feed_body, feed_items


@pytest.mark.browser
def test_ops_sees_progress_and_approves_a_held_price(page, live_server, transactional_db):
    core_demo.seed(progress=SILENT)  # the ops / ops login
    from apps.core.roles import roles_sync_permissions

    roles_sync_permissions()  # transactional_db flushed the groups' permissions
    store = StoreFactory()
    skus = catalog_create(store.merchant, 3)
    for price in (1.0, 40.0):  # the second feed is 40x: held
        run = services.feed_submit_json(
            store=store, body=feed_body(feed_items(skus, price=price)), enqueue=False
        )
        services.ingestion_run_process(run_id=run.pk)
    IngestionRun.objects.create(store=store, source="csv", items_total=400, items_done=100)

    page.goto(f"{live_server.url}/admin/login/?next=/admin/inventory/ingestionrun/")
    page.fill("#id_username", "ops")
    page.fill("#id_password", "ops")
    page.click("input[type=submit]")
    page.wait_for_selector("#result_list")
    bars = page.locator(".inventory-progress")
    assert bars.count() == 3
    assert bars.first.get_attribute("title") == "100 of 400 items"
    inner_width = page.evaluate("document.querySelector('.inventory-progress div').style.width")
    assert inner_width == "25%"

    page.goto(f"{live_server.url}/admin/inventory/store/")
    page.get_by_role("link", name="Held prices to review").click()
    page.wait_for_selector("#review-queue")
    assert page.locator("input[name=item]").count() == 3
    page.check(f"input[value='{store.pk}|{skus[0]}']")
    page.click("button[value=approve]")
    page.wait_for_selector(".messagelist")
    assert "Approved 1 held price(s)" in page.inner_text(".messagelist")
    assert page.locator("input[name=item]").count() == 2
    item = InventoryItem.objects.get(store=store, sku=skus[0])
    assert (item.display_status, item.price_cents) == ("shown", 4000)
