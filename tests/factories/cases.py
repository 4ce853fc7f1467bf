"""Factories of the cases app: queues with an active config, cases through the services."""

from __future__ import annotations

import factory

from apps.cases import services
from apps.cases.models import Case, Queue, QueueConfig

STANDARD_TRANSITIONS = {
    "new": ["assigned", "in_progress", "resolved", "closed"],
    "assigned": ["in_progress", "pending_customer", "resolved", "new"],
    "in_progress": ["pending_customer", "resolved"],
    "pending_customer": ["in_progress", "resolved"],
    "resolved": ["closed", "reopened"],
    "reopened": ["assigned", "in_progress", "resolved"],
    "closed": [],
}

REFUND_SCHEMA = {
    "type": "object",
    "properties": {
        "order_id": {"type": "string", "minLength": 3},
        "order_total": {"type": "number", "minimum": 0},
        "reason": {"type": "string", "enum": ["late", "missing_items", "damaged", "other"]},
        "items_missing": {"type": "integer", "minimum": 0},
        "vip": {"type": "boolean"},
        "delivered_on": {"type": "string", "format": "date"},
    },
    "required": ["order_id"],
    "additionalProperties": False,
}


class QueueFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Queue
        django_get_or_create = ("slug",)
        skip_postgeneration_save = True

    slug = factory.Sequence(lambda n: f"queue-{n}")
    name = factory.LazyAttribute(lambda q: q.slug.replace("-", " ").title())

    @factory.post_generation
    def config(self, create, extracted, **kwargs):
        """An active config: QueueFactory(config__fields_schema=..., config__targeting_rules=...)."""
        if not create or extracted is False:
            return
        if QueueConfig.objects.filter(queue=self, is_active=True).exists():
            return
        services.queue_config_publish(
            queue=self,
            fields_schema=kwargs.pop("fields_schema", {"type": "object"}),
            transitions=kwargs.pop("transitions", STANDARD_TRANSITIONS),
            sla=kwargs.pop("sla", {"first_response_minutes": 60}),
            **kwargs,
        )


def make_case(*, queue: Queue | None = None, fields: dict | None = None, **kwargs) -> Case:
    """A case created through `case_create` (so its `created` event exists)."""
    return services.case_create(queue=queue or QueueFactory(), fields=fields or {}, **kwargs)
