"""Beat schedules exist on a fresh database; the API schema documents the inventory routes."""

import pytest
from django_celery_beat.models import PeriodicTask

pytestmark = pytest.mark.django_db


def test_beat_schedules_are_created_by_the_migration():
    tasks = dict(
        PeriodicTask.objects.filter(task__startswith="apps.inventory.").values_list("task", "interval__every")
    )
    assert tasks == {
        "apps.inventory.tasks.ingestion_runs_requeue_stale": 5,
        "apps.inventory.tasks.inventory_purge_expired": 3600,
        "apps.inventory.tasks.oos_model_train": 86400,
    }


def test_openapi_schema_documents_the_item_status_route(client):
    from tests.factories.accounts import UserFactory

    client.force_login(UserFactory(is_staff=True))
    schema = client.get("/api/schema/?format=json").json()
    route = schema["paths"]["/api/v1/inventory/stores/{store_id}/items/{sku}/"]["get"]
    assert "ItemStatus" in str(route["responses"]["200"])
    assert "/api/v1/inventory/stores/{store_id}/feeds/" in schema["paths"]
