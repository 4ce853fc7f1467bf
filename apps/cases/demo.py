"""Demo queues with their configs, agents linked to queues, and a few hundred cases (bulk)."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from django.utils import timezone

from apps.assignment.models import Agent
from apps.cases import services
from apps.cases.models import Case, CaseEvent, Channel, Queue, QueueConfig, Source, Status
from apps.core.progress import Progress

DEMO_NAMESPACE = uuid.UUID("0b6f8f0e-4c1a-5d7e-9a3b-2f1e6d5c4b3a")
DEMO_CASES = 300
MERCHANTS = [f"m-{n}" for n in range(1001, 1006)]

TRANSITIONS = {
    "new": ["assigned", "in_progress", "resolved", "closed"],
    "assigned": ["in_progress", "pending_customer", "resolved", "new"],
    "in_progress": ["pending_customer", "resolved"],
    "pending_customer": ["in_progress", "resolved"],
    "resolved": ["closed", "reopened"],
    "reopened": ["assigned", "in_progress", "resolved"],
    "closed": [],
}
ORDER = {"order_id": {"type": "string", "minLength": 3}, "order_total": {"type": "number", "minimum": 0}}

QUEUES = {
    "general": {
        "name": "General",
        "fields_schema": {"type": "object", "properties": {
            **ORDER, "topic": {"type": "string", "enum": ["account", "delivery", "payment", "other"]}}},
        "sla": {"first_response_minutes": 60, "resolution_minutes": 1440},
        "routing": {"skills": ["english"], "priority_weights": {"4": 10, "3": 5, "2": 2, "1": 1}},
    },
    "refunds": {
        "name": "Refunds",
        "fields_schema": {"type": "object", "required": ["order_id"], "properties": {
            **ORDER, "reason": {"type": "string", "enum": ["late", "missing_items", "damaged", "wrong_item"]},
            "items_missing": {"type": "integer", "minimum": 0}, "vip": {"type": "boolean"},
            "delivered_on": {"type": "string", "format": "date"}}},
        "sla": {"first_response_minutes": 30, "resolution_minutes": 720},
        "routing": {"skills": ["refunds"], "priority_weights": {"4": 10, "3": 5, "2": 2, "1": 1}},
    },
    "fraud_review": {
        "name": "Fraud review",
        "fields_schema": {"type": "object", "required": ["order_id", "risk_score"], "properties": {
            **ORDER, "risk_score": {"type": "integer", "minimum": 0, "maximum": 100},
            "chargeback": {"type": "boolean"}}},
        "sla": {"first_response_minutes": 120, "resolution_minutes": 2880},
        "routing": {"skills": ["fraud"], "priority_weights": {"4": 20, "3": 8, "2": 2, "1": 1}},
    },
    "proactive_late_delivery": {
        "name": "Proactive: late delivery",
        "fields_schema": {"type": "object", "properties": {
            "minutes_late": {"type": "integer", "minimum": 0}, "carrier": {"type": "string"}}},
        "sla": {"first_response_minutes": 15},
        "routing": {"skills": ["english"], "priority_weights": {"3": 5}},
        "targeting_rules": {
            "signal_types": ["late_delivery"], "priority": 3,
            "conditions": [{"path": "minutes_late", "op": "gte", "value": 20}],
            "experiment": {"name": "late-delivery-outreach", "treatment_percent": 50},
        },
    },
}


def _fields(slug: str, rng: random.Random, n: int) -> dict:
    order = {"order_id": f"ORD-{100000 + n}", "order_total": round(rng.uniform(5, 250), 2)}
    if slug == "general":
        return {**order, "topic": rng.choice(["account", "delivery", "payment", "other"])}
    if slug == "refunds":
        fields = {**order, "reason": rng.choice(["late", "missing_items", "damaged", "wrong_item"]),
                  "vip": rng.random() < 0.1}
        if fields["reason"] == "missing_items":
            fields["items_missing"] = rng.randint(1, 4)
        return fields
    if slug == "fraud_review":
        return {**order, "risk_score": rng.randint(40, 100), "chargeback": rng.random() < 0.3}
    return {"minutes_late": rng.randint(20, 90), "carrier": rng.choice(["bike", "car", "scooter"])}


def seed(*, progress: Progress) -> dict[str, int]:
    queues: dict[str, Queue] = {}
    for slug, spec in QUEUES.items():
        spec = dict(spec)
        queue, _ = Queue.objects.get_or_create(slug=slug, defaults={"name": spec.pop("name")})
        spec.pop("name", None)
        if not QueueConfig.objects.filter(queue=queue, is_active=True).exists():
            services.queue_config_publish(queue=queue, transitions=TRANSITIONS, **spec)
        queues[slug] = queue

    # Agents work the general and proactive queues, plus the queues their skills fit.
    through = Agent.queues.through
    links = []
    for agent in Agent.objects.filter(user__username__regex=r"^agent\d+$"):
        slugs = {"general", "proactive_late_delivery"}
        if "refunds" in agent.skills:
            slugs.add("refunds")
        if "fraud" in agent.skills:
            slugs.add("fraud_review")
        links += [through(agent_id=agent.pk, queue_id=queues[s].pk) for s in slugs]
    through.objects.bulk_create(links, ignore_conflicts=True)

    rng = random.Random(42)
    now = timezone.now()
    slugs = list(QUEUES)
    wanted = [uuid.uuid5(DEMO_NAMESPACE, f"demo-case:{n}") for n in range(DEMO_CASES)]
    present = set(Case.objects.filter(pk__in=wanted).values_list("pk", flat=True))
    fresh = []
    for n, case_id in enumerate(wanted):
        slug = slugs[n % len(slugs)] if n % 7 else "refunds"
        # Built even when present, so the random sequence (and the data) is the same every run.
        case = Case(
            id=case_id, queue=queues[slug], status=Status.NEW, priority=rng.choice([1, 2, 2, 2, 3, 4]),
            channel=Channel.PROACTIVE if slug == "proactive_late_delivery" else rng.choice(
                [Channel.CHAT, Channel.EMAIL, Channel.PHONE, Channel.WEB]),
            source=Source.DEMO, subject=f"Demo case {n} ({slug})", merchant_ref=MERCHANTS[n % len(MERCHANTS)],
            customer_ref=f"c-{5000 + n}", delivery_ref=f"dl-{700000 + n}", fields=_fields(slug, rng, n),
            created_at=now - timedelta(minutes=rng.randint(1, 60 * 24 * 14)),
        )
        if case_id not in present:
            fresh.append(case)
    services.cases_bulk_create(cases=fresh)

    # A few cases worked through the services, so timelines and metrics have something to show.
    agents = list(Agent.objects.order_by("pk")[:8])
    if agents and fresh:
        for i, case in enumerate(fresh[:24]):
            services.case_assign(case=case, agent=agents[i % len(agents)])
            services.case_add_message(case=case, body="Thanks for reaching out, we are looking into it.")
            if i % 3:
                services.case_transition(case=case, to_status=Status.RESOLVED, note="Solved first time.")
    return {"queues": Queue.objects.count(), "cases": Case.objects.count(),
            "case_events": CaseEvent.objects.count()}
