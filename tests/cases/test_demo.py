"""The cases demo seeder: fast, idempotent, with agents linked to queues."""

import pytest

from apps.assignment import demo as assignment_demo
from apps.cases import demo
from apps.cases.models import Case, CaseEvent, Queue, Status
from apps.core import demo as core_demo
from apps.core.progress import SILENT


@pytest.mark.django_db
def test_seed_is_idempotent_and_complete():
    core_demo.seed(progress=SILENT)
    assignment_demo.seed(progress=SILENT)
    counts = demo.seed(progress=SILENT)
    assert counts["queues"] == 4 and counts["cases"] == demo.DEMO_CASES
    assert set(Queue.objects.values_list("slug", flat=True)) == set(demo.QUEUES)
    # every case has its created event; the worked ones have full timelines
    assert CaseEvent.objects.filter(kind="created").count() == demo.DEMO_CASES
    assert Case.objects.filter(status=Status.RESOLVED).count() == 16
    assert set(Case.objects.values_list("merchant_ref", flat=True)) == set(demo.MERCHANTS)
    refunds = Queue.objects.get(slug="refunds")
    assert refunds.agents.exists() and Queue.objects.get(slug="general").agents.count() == 8
    fields_before = dict(Case.objects.values_list("pk", "fields"))
    assert demo.seed(progress=SILENT) == counts
    assert dict(Case.objects.values_list("pk", "fields")) == fields_before
