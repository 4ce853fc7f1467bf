"""Demo agents with presence, capacity and skills."""

from django.utils import timezone

from apps.assignment.models import Agent, Presence
from apps.core.demo import demo_user
from apps.core.progress import Progress

DEMO_AGENTS = 8
SKILLS = (["english", "refunds"], ["english", "spanish"], ["fraud", "english"], ["english", "grocery"])


def seed(*, progress: Progress) -> dict[str, int]:
    for n in range(1, DEMO_AGENTS + 1):
        user = demo_user(f"agent{n}", "agent", roles=("agent",))
        Agent.objects.get_or_create(
            user=user,
            defaults={
                "display_name": f"Agent {n}",
                "skills": SKILLS[n % len(SKILLS)],
                "capacity": 2 + n % 3,
                "presence": Presence.AVAILABLE if n % 4 else Presence.AWAY,
                "presence_changed_at": timezone.now(),
            },
        )
    return {"agents": Agent.objects.count()}
