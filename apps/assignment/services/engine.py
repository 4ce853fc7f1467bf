"""The micro-batch assignment engine: claim waiting cases (SKIP LOCKED), load agents once,
choose per queue strategy, reserve capacity in Redis in one call, and write every assignment,
event and decision in a constant number of statements."""

from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.contrib.postgres.expressions import ArraySubquery
from django.db import DatabaseError, connection, transaction
from django.db.models import F, FloatField, Func, OuterRef, Q
from django.db.models.functions import Now
from django.utils import timezone

from apps.assignment import counters, roster, routing
from apps.assignment.models import Offer, OfferState
from apps.assignment.selectors import agents_routable
from apps.assignment.services.counters import counters_reconcile
from apps.assignment.services.offers import assignment_batch_started, offers_record
from apps.cases import services as case_services
from apps.cases.models import WAITING, Case, CaseEvent, QueueConfig
from apps.core.feed import feed_writer_enter
from apps.core.memory import cyclic_gc_paused
from apps.core.scheduling import task_send_on_commit

PUBLISH_TASK = "apps.assignment.tasks.agent_states_publish"

logger = logging.getLogger(__name__)


@dataclass
class BatchResult:
    batch: str
    claimed: int = 0
    assigned: int = 0
    waiting: int = 0
    refused: int = 0  # chosen, but a concurrent batch took the capacity first
    offered: int = 0  # of the assigned, how many are offers waiting for the agent's answer
    assignments: dict = field(default_factory=dict)  # case id -> agent id


def _constraints_immediate() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _claim(batch_size: int) -> list[tuple]:
    """Waiting cases that are due, most urgent then oldest, locked; each with its creation time in
    epoch seconds (all the engine needs of it, without parsing a datetime per row) and the agents
    who declined it or let its offer expire (an index probe per row, in the same statement)."""
    with connection.cursor() as cursor:
        cursor.execute(*_claim_sql(batch_size))
        return cursor.fetchall()


@functools.cache
def _claim_sql(batch_size: int) -> tuple[str, tuple]:
    """The claim's SQL and parameters, compiled once per process (in a batch's transaction, which
    select_for_update requires): nothing in it changes between batches (due is judged by the
    database's clock), and building and compiling it cost each batch 0.8 ms. Its columns come in
    the order of values_list below, annotations included, as the cursor returns them."""
    due = Q(routing_retry_at__isnull=True) | Q(routing_retry_at__lte=Now())
    passed = ArraySubquery(Offer.objects.filter(case_id=OuterRef("pk"),
                                                state__in=(OfferState.DECLINED, OfferState.EXPIRED))
                           .order_by().values("agent_id"))
    # Not Extract("epoch"): with USE_TZ it converts to the current time zone first.
    created = Func(F("created_at"), template="EXTRACT(EPOCH FROM %(expressions)s)::float8",
                   output_field=FloatField())
    claim = (Case.objects.filter(WAITING).filter(due).order_by("-priority", "created_at")
             .select_for_update(skip_locked=True, of=("self",)).annotate(created=created, passed=passed)
             .values_list("id", "queue_id", "status", "channel", "created", "passed")[:batch_size])
    return claim.query.get_compiler(claim.db).as_sql()


def assignment_worker_warm() -> bool:
    """Read the agents' roster before a worker process's first batch, as the batches after it
    find it; False (and a warning) when the database cannot be read: the first batch reads the
    roster then. Run by each worker process as it starts (apps.assignment.apps)."""
    try:
        version, _rows, _unroutable = agents_routable(timezone.now())
        agents = roster.roster_at(version)
    except DatabaseError:
        logger.warning("assignment roster not read at worker start; the first batch reads it", exc_info=True)
        return False
    logger.debug("assignment roster read at worker start: %d agents", len(agents))
    return True


def _candidates(now) -> tuple[list[routing.Candidate], dict[str, int]]:
    version, rows, unroutable = agents_routable(now)
    agents = roster.roster_at(version)
    # An agent removed between the two reads is not routed to.
    rows = [row for row in rows if row[0] in agents]
    ready, loads, idle = counters.counters_read([pk for pk, _changed in rows])
    if not ready:
        counters_reconcile()
        ready, loads, idle = counters.counters_read([pk for pk, _changed in rows])
    Candidate = routing.Candidate
    candidates = []
    for pk, changed in rows:
        agent = agents[pk]
        # Positional (agent_id, skills, capacity, load, idle_since, queue_priority, channel_weights):
        # 2,000 agents a batch, and keyword arguments cost a third more.
        candidates.append(Candidate(pk, agent.skills, agent.capacity, loads.get(pk, 0),
                                    max(idle.get(pk, 0.0), changed), agent.queue_priority,
                                    agent.channel_weights))
    return candidates, unroutable


def assignment_batch_run(*, batch_size: int | None = None) -> BatchResult:
    """Run one batch; safe to run in many processes at once (SKIP LOCKED, atomic reservation,
    and the capacity trigger in PostgreSQL behind both)."""
    batch_size = batch_size or settings.ASSIGNMENT_BATCH_SIZE
    result = BatchResult(batch=uuid.uuid4().hex[:12])
    assignment_batch_started()
    reserved: list[tuple[int, int]] = []
    try:
        with cyclic_gc_paused(), transaction.atomic():
            # The feed fence before any row lock (see apps.core.feed).
            feed_writer_enter(CaseEvent)
            # Foreign keys checked as each statement ends rather than at commit, so the agents'
            # locks the write takes last are held for the commit's flush alone.
            _constraints_immediate()
            now = timezone.now()
            rows = _claim(batch_size)
            result.claimed = len(rows)
            if not rows:
                return result
            _decide_and_write(rows, now, result, reserved)
            # One publish for every agent the batch gave a case to (their tabs pop it up), by a
            # worker after commit: the fan-out to hundreds of agents stays off the batch's path.
            if result.assignments:
                task_send_on_commit(PUBLISH_TASK, sorted(set(result.assignments.values())))
    except BaseException:
        # Units reserved for assignments that were rolled back; reconcile would heal them anyway.
        counters.counters_release(reserved)
        raise
    return result


def _decide_and_write(rows, now, result: BatchResult, reserved: list) -> None:
    configs = {c.queue_id: c for c in QueueConfig.objects.filter(queue_id__in={r[1] for r in rows},
                                                                 is_active=True)
               .only("queue_id", "routing", "transitions")}
    rules = {qid: routing.Routing.from_config(c.routing) for qid, c in configs.items()}
    candidates, unroutable = _candidates(now)
    clock = now.timestamp()
    pools = routing.Pools(candidates, removed_before=unroutable, now=clock)
    tiers = sorted({p for c in candidates for p in c.queue_priority.values()}) or [1]

    # What to place per claimed row, by position (routing.place_in_tiers).
    pending = []  # (position, queue id, skills needed, weight, strategy, agents passed, channel)
    for i, (_id, queue_id, _status, channel, created, passed) in enumerate(rows):
        rule = rules.get(queue_id)
        if rule is not None:
            needed = rule.skills_needed(waited_seconds=clock - created)
            pending.append((i, queue_id, needed, rule.weight(channel), rule.strategy,
                            frozenset(passed) if passed else (), channel))
    # An agent works its first-priority queues before the others: tier 1 links first, then 2...
    placed = routing.place_in_tiers(pools, pending, tiers)
    choices = [placed.get(i) for i in range(len(rows))]
    winners = [choice.winner if choice is not None else None for choice in choices]
    # The units each placed case takes from its winner: the queue's weight or the agent's own.
    weights = [choice.weight if choice is not None else 0 for choice in choices]

    order = [i for i, winner in enumerate(winners) if winner is not None]
    wanted = [(winners[i].agent_id, weights[i], winners[i].capacity) for i in order]
    flags = counters.counters_reserve(wanted)
    if flags is None:  # flushed between read and reserve: rebuild, then one more try
        counters_reconcile()
        flags = counters.counters_reserve(wanted) or [False] * len(order)
    accepted = dict(zip(order, flags, strict=True))
    assignments, decisions, retry_at = [], {}, {}
    later = now + timedelta(seconds=settings.ASSIGNMENT_RETRY_SECONDS)
    stamp = now.isoformat()
    # Every offer of a queue in this batch expires at the same time.
    expiry = {queue_id: now + timedelta(seconds=rule.offer_timeout_seconds) if rule.offers else None
              for queue_id, rule in rules.items()}
    for i, (case_id, queue_id, status, *_) in enumerate(rows):
        rule = rules.get(queue_id)
        strategy = rule.strategy if rule else ""
        if accepted.get(i):
            winner = winners[i]
            reserved.append((winner.agent_id, weights[i]))
            expires_at = expiry[queue_id]
            assignments.append(case_services.BulkAssignment(
                case_id=case_id, queue_id=queue_id, status=status, agent_id=winner.agent_id,
                weight=weights[i], offer_expires_at=expires_at))
            decisions[case_id] = routing.decision(choice=choices[i], strategy=strategy,
                                                  outcome="offered" if rule.offers else "assigned",
                                                  batch=result.batch, at=stamp)
        elif i in accepted:
            result.refused += 1
            # Retried by the next batch at once: capacity may free up or the counter was stale.
            decisions[case_id] = routing.decision(choice=choices[i], strategy=strategy, outcome="waiting",
                                                  batch=result.batch, at=stamp,
                                                  note="capacity taken by a concurrent batch")
        else:
            decisions[case_id] = routing.decision(
                choice=choices[i], strategy=strategy, outcome="waiting", batch=result.batch, at=stamp,
                note="" if rule else "queue has no active config")
            retry_at[case_id] = later
    # The offers first and the write last: the write's capacity check locks every agent it gives
    # a case to until commit, and a batch in another process giving a case to one of them waits
    # for that lock; with only the commit after the write, it waits the least.
    held = [(a.case_id, a.agent_id, a.weight, a.offer_expires_at) for a in assignments
            if a.offer_expires_at is not None]
    if held:
        offers_record(held=held, now=now)
    done = case_services.cases_assign_many(assignments=assignments, decisions=decisions, configs=configs,
                                           retry_at=retry_at)
    if len(done) != len(assignments):
        # The claim's row locks keep every claimed case unassigned until commit; a shortfall means
        # that broke, and the batch (its offers too) is rolled back rather than half-written.
        raise RuntimeError(f"batch {result.batch}: {len(assignments) - len(done)} claimed cases "
                           "were no longer waiting")
    result.offered = len(held)
    result.assigned = len(done)
    result.waiting = result.claimed - result.assigned
    result.assignments = {a.case_id: a.agent_id for a in assignments}
