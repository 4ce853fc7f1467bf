"""The micro-batch assignment engine: claim waiting cases (SKIP LOCKED), load agents once,
choose per queue strategy, reserve capacity in Redis in one call, and write every assignment,
event and decision in a constant number of statements."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from apps.assignment import counters, routing
from apps.assignment.selectors import agents_routable, agents_unroutable_counts
from apps.assignment.services.counters import counters_reconcile
from apps.cases import services as case_services
from apps.cases.models import WAITING, Case, CaseEvent, QueueConfig
from apps.core.feed import feed_writer_enter


@dataclass
class BatchResult:
    batch: str
    claimed: int = 0
    assigned: int = 0
    waiting: int = 0
    refused: int = 0  # chosen, but a concurrent batch took the capacity first
    assignments: dict = field(default_factory=dict)  # case id -> agent id


def _claim(now, batch_size: int) -> list[tuple]:
    due = Q(routing_retry_at__isnull=True) | Q(routing_retry_at__lte=now)
    return list(Case.objects.filter(WAITING).filter(due).order_by("-priority", "created_at")
                .select_for_update(skip_locked=True)
                .values_list("id", "queue_id", "status", "channel", "created_at")[:batch_size])


def _candidates(now, ready_loads) -> tuple[list[routing.Candidate], dict[int, str]]:
    rows = list(agents_routable(now).values_list(
        "pk", "display_name", "skills", "capacity", "presence_changed_at", "link_queues", "link_priorities"))
    ready, loads, idle = counters.counters_read([row[0] for row in rows])
    if not ready:
        counters_reconcile()
        ready, loads, idle = counters.counters_read([row[0] for row in rows])
    ready_loads.append(ready)
    candidates, labels = [], {}
    for pk, name, skills, capacity, changed, queues, priorities in rows:
        since = max(idle.get(pk, 0.0), changed.timestamp() if changed else 0.0)
        candidates.append(routing.Candidate(
            agent_id=pk, skills=frozenset(skills), capacity=capacity, load=loads.get(pk, 0), idle_since=since,
            queue_priority={q: p for q, p in zip(queues, priorities, strict=True) if q is not None}))
        labels[pk] = name
    return candidates, labels


def assignment_batch_run(*, batch_size: int | None = None) -> BatchResult:
    """Run one batch; safe to run in many processes at once (SKIP LOCKED, atomic reservation,
    and the capacity trigger in PostgreSQL behind both)."""
    batch_size = batch_size or settings.ASSIGNMENT_BATCH_SIZE
    result = BatchResult(batch=uuid.uuid4().hex[:12])
    reserved: list[tuple[int, int]] = []
    try:
        with transaction.atomic():
            # The feed fence before any row lock (see apps.core.feed).
            feed_writer_enter(CaseEvent)
            now = timezone.now()
            rows = _claim(now, batch_size)
            result.claimed = len(rows)
            if not rows:
                return result
            _decide_and_write(rows, now, result, reserved)
    except BaseException:
        # Units reserved for assignments that were rolled back; reconcile would heal them anyway.
        counters.counters_release(reserved)
        raise
    return result


def _decide_and_write(rows, now, result: BatchResult, reserved: list) -> None:
    configs = {c.queue_id: c for c in QueueConfig.objects.filter(queue_id__in={r[1] for r in rows},
                                                                 is_active=True)}
    rules = {qid: routing.Routing.from_config(c.routing) for qid, c in configs.items()}
    candidates, labels = _candidates(now, [])
    unroutable = agents_unroutable_counts(now)
    pools: dict[int, list[routing.Candidate]] = {}
    for candidate in candidates:
        for queue_id in candidate.queue_priority:
            pools.setdefault(queue_id, []).append(candidate)
    tiers = sorted({p for c in candidates for p in c.queue_priority.values()}) or [1]
    clock = now.timestamp()

    chosen: dict = {}  # case id -> (winner, weight, choice)
    last_choice: dict = {}
    pending = [r for r in rows if r[1] in configs]
    # An agent works its first-priority queues before the others: tier 1 links first, then 2...
    for tier in tiers:
        still = []
        for case_id, queue_id, _status, channel, created_at in pending:
            rule = rules[queue_id]
            pool = pools.get(queue_id, ())
            before = {**unroutable, "not_in_queue": len(candidates) - len(pool)}
            choice = routing.choose(
                pool=pool, queue_id=queue_id, weight=rule.weight(channel), strategy=rule.strategy,
                needed=rule.skills_needed(waited_seconds=(now - created_at).total_seconds()),
                max_priority=tier, removed_before=before, now=clock)
            last_choice[case_id] = choice
            if choice.winner is None:
                still.append((case_id, queue_id, _status, channel, created_at))
                continue
            winner = choice.winner
            winner.load += rule.weight(channel)
            winner.idle_since = clock
            chosen[case_id] = (winner, rule.weight(channel), choice)
        pending = still
        if not pending:
            break

    order = [r for r in rows if r[0] in chosen]
    flags = counters.counters_reserve([(chosen[r[0]][0].agent_id, chosen[r[0]][1], chosen[r[0]][0].capacity)
                                       for r in order])
    if flags is None:  # flushed between read and reserve: rebuild, then one more try
        counters_reconcile()
        flags = counters.counters_reserve([(chosen[r[0]][0].agent_id, chosen[r[0]][1],
                                            chosen[r[0]][0].capacity) for r in order]) or [False] * len(order)
    assignments, decisions, retry_at = [], {}, {}
    later = now + timedelta(seconds=settings.ASSIGNMENT_RETRY_SECONDS)
    by_id = {r[0]: r for r in rows}
    for (case_id, *_), accepted in zip(order, flags, strict=True):
        winner, weight, choice = chosen[case_id]
        strategy = rules[by_id[case_id][1]].strategy
        if accepted:
            reserved.append((winner.agent_id, weight))
            assignments.append(case_services.BulkAssignment(
                case_id=case_id, queue_id=by_id[case_id][1], status=by_id[case_id][2],
                agent_id=winner.agent_id, agent_label=labels[winner.agent_id], weight=weight))
            decisions[case_id] = routing.decision(choice=choice, strategy=strategy, outcome="assigned",
                                                  batch=result.batch, at=now)
        else:
            result.refused += 1
            # Retried by the next batch at once: capacity may free up or the counter was stale.
            decisions[case_id] = routing.decision(choice=choice, strategy=strategy, outcome="waiting",
                                                  batch=result.batch, at=now,
                                                  note="capacity taken by a concurrent batch")
    for case_id, queue_id, *_ in rows:
        if case_id in decisions:
            continue
        rule = rules.get(queue_id)
        decisions[case_id] = routing.decision(
            choice=last_choice.get(case_id), strategy=rule.strategy if rule else "", outcome="waiting",
            batch=result.batch, at=now, note="" if rule else "queue has no active config")
        retry_at[case_id] = later
    done = case_services.cases_assign_many(assignments=assignments, decisions=decisions, configs=configs,
                                           retry_at=retry_at)
    done_set = set(done)
    lost = [(a.agent_id, a.weight) for a in assignments if a.case_id not in done_set]
    if lost:
        counters.counters_release(lost)
        for item in lost:
            reserved.remove(item)
    result.assigned = len(done)
    result.waiting = result.claimed - result.assigned
    result.assignments = {a.case_id: a.agent_id for a in assignments if a.case_id in done_set}
