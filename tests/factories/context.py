"""Factories of the context cache (apps/cases/context)."""

import factory
from django.utils import timezone

from apps.cases.context.models import ContextRecord
from apps.cases.context.services import data_hash


class ContextRecordFactory(factory.django.DjangoModelFactory):
    """A cached outside record as a fetch would have stored it."""

    class Meta:
        model = ContextRecord

    type = "delivery"
    key = factory.Sequence(lambda n: f"D-{n}")
    data = factory.LazyAttribute(lambda o: {"id": o.key, "status": "cached"})
    data_hash = factory.LazyAttribute(lambda o: data_hash(o.data))
    fetched_at = factory.LazyFunction(timezone.now)
