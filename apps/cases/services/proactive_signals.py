"""Proactive delivery signals: a queue's targeting rules pick the signal up, the experiment split
decides outreach or control, and at most one case is created per (delivery, signal type)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import F

from apps.cases import selectors, targeting
from apps.cases.models import Case, CaseEvent, Channel, ExperimentGroup, Priority, SignalOutcome, Source
from apps.cases.services.cases import case_create
from apps.core.errors import ApplicationError
from apps.core.feed import feed_writer_enter


@dataclass
class SignalResult:
    targeted: bool
    outcome: SignalOutcome | None = None
    created: bool = False  # False on a retry of a signal already handled

    @property
    def case(self) -> Case | None:
        return self.outcome.case if self.outcome else None


_OUTCOME_INSERT = """
INSERT INTO cases_signaloutcome
    (delivery_ref, signal_type, queue_id, experiment, "group", payload, received_count, created_at)
VALUES (%s, %s, %s, %s, %s, %s::jsonb, 1, now())
ON CONFLICT (delivery_ref, signal_type) DO NOTHING
RETURNING id
"""


def signal_ingest(*, signal_type: str, delivery_ref: str, payload: dict | None = None,
                  merchant_ref: str = "", customer_ref: str = "", actor=None) -> SignalResult:
    """Turn a delivery signal into at most one proactive case per (delivery, signal type).

    Dedup is `INSERT ... ON CONFLICT DO NOTHING` on the outcome's unique key: a concurrent retry
    blocks on the first insert's index entry until it commits, then finds the row instead.
    """
    payload = payload or {}
    config = next((c for c in selectors.queue_configs_for_signal(signal_type)
                   if targeting.targeting_matches(c.targeting, signal_type, payload)), None)
    if config is None:
        return SignalResult(targeted=False)
    experiment, group = targeting.experiment_group(config.targeting, delivery_ref)
    with transaction.atomic():
        feed_writer_enter(CaseEvent)
        with connection.cursor() as cursor:
            cursor.execute(_OUTCOME_INSERT, [delivery_ref, signal_type, config.queue_id, experiment, group,
                                             json.dumps(payload)])
            row = cursor.fetchone()
        if row is None:
            SignalOutcome.objects.filter(delivery_ref=delivery_ref, signal_type=signal_type).update(
                received_count=F("received_count") + 1)
            outcome = SignalOutcome.objects.select_related("case").get(delivery_ref=delivery_ref,
                                                                         signal_type=signal_type)
            return SignalResult(targeted=True, outcome=outcome, created=False)
        outcome = SignalOutcome.objects.get(pk=row[0])
        if group != ExperimentGroup.CONTROL:
            properties = (config.fields_schema or {}).get("properties", {})
            try:
                outcome.case = case_create(
                    queue=config.queue, actor=actor, source=Source.SIGNAL, channel=Channel.PROACTIVE,
                    priority=config.targeting.get("priority", Priority.NORMAL),
                    subject=f"{signal_type.replace('_', ' ').capitalize()}: delivery {delivery_ref}",
                    merchant_ref=merchant_ref, customer_ref=customer_ref, delivery_ref=delivery_ref,
                    signal_type=signal_type, fields={k: v for k, v in payload.items() if k in properties},
                )
            except ApplicationError as exc:
                # The dynamic fields come from the payload: name the sender's keys. Nothing is
                # recorded (the outcome rolls back too), so a corrected retry is taken.
                raise ApplicationError(
                    f"The payload does not fit the dynamic fields of queue '{config.queue.slug}'.",
                    errors={"payload" + key.removeprefix("fields") if key.startswith("fields") else key: msgs
                            for key, msgs in exc.errors.items()},
                    code=exc.code,
                ) from exc
            outcome.save(update_fields=["case"])
        return SignalResult(targeted=True, outcome=outcome, created=True)
