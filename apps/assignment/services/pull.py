"""Pull: an agent asks for their next best case. Ranked by the engine's rules (their
first-priority queues first, then most urgent, then oldest; skills with relaxation; room for the
case's weight; never a case they declined or let expire), claimed with the same row locks
(SKIP LOCKED), the same Redis reservation and the same set-based write as a batch."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.db.models import Case as CaseWhen
from django.db.models import Exists, IntegerField, OuterRef, Value, When
from django.utils import timezone

from apps.assignment import counters, routing
from apps.assignment.models import Agent, AgentQueue, Offer, OfferState, Presence
from apps.assignment.realtime import agent_state_publish_on_commit
from apps.assignment.selectors import agent_loads
from apps.assignment.services.counters import counters_reconcile
from apps.assignment.services.offers import agent_for_user
from apps.cases import services as case_services
from apps.cases.models import WAITING, Case, CaseEvent, QueueConfig
from apps.core.errors import Conflict
from apps.core.feed import feed_writer_enter

PULL_STRATEGY = "pull"
# Cases looked at per pull: enough that a few the agent cannot take (skills, weight) never hide
# one they can; the lock is taken only on these.
PULL_SCAN = 50


def _ranked_waiting(agent: Agent, links: dict[int, int]):
    tier = CaseWhen(*[When(queue_id=queue_id, then=Value(priority)) for queue_id, priority in links.items()],
                 output_field=IntegerField())
    passed = Offer.objects.filter(case_id=OuterRef("pk"), agent_id=agent.pk,
                                  state__in=(OfferState.DECLINED, OfferState.EXPIRED))
    return (Case.objects.filter(WAITING, queue_id__in=list(links)).exclude(Exists(passed))
            .annotate(tier=tier).order_by("tier", "-priority", "created_at")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("id", "queue_id", "status", "channel", "created_at")[:PULL_SCAN])


def case_next_for_agent(*, user) -> Case | None:
    """Assign the calling agent their next best case (directly: they asked for it); None when
    nothing waiting fits them. The agent must be available."""
    agent = agent_for_user(user)
    reserved: list[tuple[int, int]] = []
    try:
        with transaction.atomic():
            feed_writer_enter(CaseEvent)  # the fence before any row lock (apps.core.feed)
            now = timezone.now()
            agent = Agent.objects.select_related("user").get(pk=agent.pk)
            if agent.presence != Presence.AVAILABLE:
                raise Conflict("Set yourself available to take cases.", code="agent_not_available",
                               errors={"presence": ["Only an available agent takes cases."]})
            # Asking for work is a sign of life, as a heartbeat is.
            Agent.objects.filter(pk=agent.pk).update(heartbeat_at=now)
            links = dict(AgentQueue.objects.filter(agent=agent).values_list("queue_id", "priority"))
            rows = list(_ranked_waiting(agent, links)) if links else []
            if not rows:
                return None
            configs = {c.queue_id: c for c in QueueConfig.objects.filter(
                queue_id__in={r[1] for r in rows}, is_active=True).only("queue_id", "routing", "transitions")}
            spare = agent.capacity - agent_loads([agent.pk])[agent.pk]
            skills, clock = frozenset(agent.skills), now.timestamp()
            for case_id, queue_id, status, channel, created_at in rows:
                config = configs.get(queue_id)
                if config is None:
                    continue
                rule = routing.Routing.from_config(config.routing)
                weight = routing.units_for(agent.channel_weights, channel, rule.weight(channel))
                needed = rule.skills_needed(waited_seconds=clock - created_at.timestamp())
                if weight <= spare and needed <= skills:
                    agent_state_publish_on_commit({agent.pk})
                    return _take(agent, case_id, queue_id, status, weight, configs, now, reserved)
            return None
    except BaseException:
        counters.counters_release(reserved)
        raise


def _take(agent: Agent, case_id, queue_id: int, status: str, weight: int, configs, now, reserved) -> Case:
    flags = counters.counters_reserve([(agent.pk, weight, agent.capacity)])
    if flags is None:  # flushed: rebuild, then one more try
        counters_reconcile()
        flags = counters.counters_reserve([(agent.pk, weight, agent.capacity)])
    if not flags or not flags[0]:
        raise Conflict("You have no spare capacity for another case.", code="agent_at_capacity")
    reserved.append((agent.pk, weight))
    choice = routing.Choice(winner=None, removed={}, top=[(agent.pk, agent.capacity - weight)])
    decision = routing.decision(choice=choice, strategy=PULL_STRATEGY, outcome="assigned",
                                batch=PULL_STRATEGY, at=now)
    decision["winner"] = agent.pk
    try:
        with transaction.atomic():  # a savepoint: a refusal by the capacity guard is reported, not a 500
            done = case_services.cases_assign_many(
                assignments=[case_services.BulkAssignment(case_id=case_id, queue_id=queue_id, status=status,
                                                          agent_id=agent.pk, weight=weight)],
                decisions={case_id: decision}, configs=configs, actor=agent.user)
    except IntegrityError:
        raise Conflict("You have no spare capacity for another case.", code="agent_at_capacity") from None
    if not done:
        raise Conflict("The case was taken meanwhile; ask again.", code="case_taken")
    return Case.objects.get(pk=case_id)
