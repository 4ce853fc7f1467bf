"""Demo data for `manage.py seed_demo`: every app registers an idempotent seeder.

A seeder is `seed(*, progress) -> dict[str, int]` (counts of what now exists). Each app
registers its own in `AppConfig.ready()`, naming the apps whose demo data it relies on;
seeders run so that those come first, each in its own transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.exceptions import ImproperlyConfigured

from apps.core.progress import Progress

Seed = Callable[..., dict[str, int]]


@dataclass(frozen=True)
class Seeder:
    app_label: str
    seed: Seed
    after: tuple[str, ...]


_seeders: dict[str, Seeder] = {}


def register_seeder(app_label: str, seed: Seed, *, after: tuple[str, ...] = ()) -> Seed:
    """Register `app_label`'s seeder, to run once the seeders of the apps in `after` have run."""
    _seeders[app_label] = Seeder(app_label, seed, tuple(after))
    return seed


def seeders() -> list[Seeder]:
    """Every registered seeder, each after those it relies on; otherwise in registration order."""
    missing = {dep for s in _seeders.values() for dep in s.after} - set(_seeders)
    if missing:
        raise ImproperlyConfigured(f"Demo seeders rely on apps with no seeder: {', '.join(sorted(missing))}.")
    ordered: list[Seeder] = []
    done: set[str] = set()
    pending = list(_seeders.values())
    while pending:
        ready = next((s for s in pending if set(s.after) <= done), None)
        if ready is None:
            raise ImproperlyConfigured(
                f"Demo seeders rely on each other in a cycle: {', '.join(s.app_label for s in pending)}.")
        ordered.append(ready)
        done.add(ready.app_label)
        pending.remove(ready)
    return ordered


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
