"""Demo data for `manage.py seed_demo`: every app contributes an idempotent seeder.

A seeder is `seed(*, progress) -> dict[str, int]` (counts of what now exists). Seeders run
in this order, each in its own transaction, and may rely on the ones before them.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.core.progress import Progress

SEEDERS = (
    "apps.core.demo.seed",
    "apps.assignment.demo.seed",
    "apps.merchants.demo.seed",
    "apps.cases.demo.seed",
    "apps.inventory.demo.seed",
    "apps.health.demo.seed",
)

# Development-only logins, printed by `make run`. Never used outside the embedded stack.
DEMO_LOGINS = (
    # username, password, roles, is_superuser
    ("admin", "admin", (), True),
    ("ops", "ops", ("ops",), False),
    ("editor", "editor", ("queue-config-editor",), False),
)


def demo_user(username: str, password: str, *, roles=(), superuser: bool = False, staff: bool = True):
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=username,
        defaults={"email": f"{username}@demo.casehub.local", "is_staff": staff, "is_superuser": superuser},
    )
    if created:
        user.set_password(password)
        user.save(update_fields=["password"])
        if roles:
            user.groups.add(*Group.objects.filter(name__in=roles))
    return user


def seed(*, progress: Progress) -> dict[str, int]:
    for username, password, roles, superuser in DEMO_LOGINS:
        demo_user(username, password, roles=roles, superuser=superuser)
    return {"users": get_user_model().objects.count()}
