"""Demo agents with presence, capacity and skills, online while the embedded demo runs: no agent
client sends heartbeats or answers offers there, so a demo-only beat job does both on the demo
agents' behalf."""

from __future__ import annotations

from celery import shared_task
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from apps.assignment import services
from apps.assignment.models import Agent, Offer, OfferState, Presence
from apps.core.demo import demo_user
from apps.core.errors import ApplicationError
from apps.core.progress import Progress

# (skills, capacity, presence) of agent1, agent2, ...: the demo backlog fits the capacity of the
# available agents with a little room to spare, so `make run` shows it assigned within a batch or
# two; one agent is away and one lacks the general queue's skill, so decisions remove agents by rule.
AGENTS = (
    (["english", "spanish"], 4, Presence.AVAILABLE),
    (["fraud"], 70, Presence.AVAILABLE),  # linked to the general queue too, without its skill
    (["english", "grocery"], 3, Presence.AWAY),
    (["english", "refunds"], 80, Presence.AVAILABLE),
    (["english", "spanish"], 50, Presence.AVAILABLE),
    (["fraud", "english"], 4, Presence.AVAILABLE),
    (["english", "grocery"], 50, Presence.AVAILABLE),
    (["english", "refunds"], 80, Presence.AVAILABLE),
)
DEMO_AGENTS = len(AGENTS)
DEMO_USERNAME_RE = r"^agent\d+$"

HEARTBEAT_TASK = "apps.assignment.demo.demo_agents_heartbeat"
HEARTBEAT_SCHEDULE = "assignment: demo agents heartbeat (embedded demo only)"
# Well inside ASSIGNMENT_HEARTBEAT_TTL_SECONDS (60 s by default), so a late run never lets them
# expire; and often enough that offers are taken within seconds, as a person at the desk would.
HEARTBEAT_EVERY_S = 5


def demo_heartbeats_enabled() -> bool:
    """Only the embedded stack (`make run`) has demo agents and no agent client to keep them alive."""
    return settings.ASSIGNMENT_DEMO_HEARTBEATS


def demo_agents() -> QuerySet[Agent]:
    return Agent.objects.filter(user__username__regex=DEMO_USERNAME_RE)


def demo_agents_online() -> int:
    """Demo agents meant to be available come (back) online with a fresh heartbeat, as when the
    demo's agents open their workspace; returns how many are available."""
    now = timezone.now()
    meant = [f"agent{n}" for n, (_, _, presence) in enumerate(AGENTS, 1) if presence == Presence.AVAILABLE]
    # Offline is where the presence-expiry job left them while the demo was stopped.
    demo_agents().filter(user__username__in=meant, presence=Presence.OFFLINE).update(
        presence=Presence.AVAILABLE, presence_changed_at=now)
    return demo_agents().filter(presence=Presence.AVAILABLE).update(heartbeat_at=now)


@shared_task(name=HEARTBEAT_TASK, soft_time_limit=10, time_limit=20)
def demo_agents_heartbeat() -> int:
    """Beat-driven in the embedded demo only: the demo agents' stand-in client. Available demo
    agents stay fresh; one set away or offline in the admin is left so."""
    if not demo_heartbeats_enabled():
        return 0
    fresh = demo_agents().filter(presence=Presence.AVAILABLE).update(heartbeat_at=timezone.now())
    demo_offers_accept()
    return fresh


def demo_offers_accept() -> int:
    """The demo agents accept what the engine offers them, one offer at a time as their client
    would; returns how many were accepted (an offer settled meanwhile is skipped)."""
    accepted = 0
    pending = list(Offer.objects.filter(state=OfferState.PENDING, agent__in=demo_agents(),
                                        expires_at__gt=timezone.now())
                   .select_related("agent__user").order_by("pk"))
    for offer in pending:
        try:
            services.offer_accept(offer_id=offer.pk, user=offer.agent.user)
        except ApplicationError:
            continue
        accepted += 1
    return accepted


def _heartbeat_schedule() -> None:
    interval, _ = IntervalSchedule.objects.get_or_create(every=HEARTBEAT_EVERY_S,
                                                         period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.update_or_create(name=HEARTBEAT_SCHEDULE, defaults={
        "task": HEARTBEAT_TASK, "interval": interval, "enabled": True})


def seed(*, progress: Progress) -> dict[str, int]:
    now = timezone.now()
    for n, (skills, capacity, presence) in enumerate(AGENTS, 1):
        user = demo_user(f"agent{n}", "agent", roles=("agent",))
        Agent.objects.get_or_create(user=user, defaults={
            "display_name": f"Agent {n}", "skills": skills, "capacity": capacity, "presence": presence,
            "presence_changed_at": now,
        })
    demo_agents_online()
    if demo_heartbeats_enabled():
        _heartbeat_schedule()
    return {"agents": Agent.objects.count()}
