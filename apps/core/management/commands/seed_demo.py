"""Load the demo data set (idempotent: running it twice leaves the same counts), in production and,
when enabled, in the sandbox tenant, whose demo logins carry a `sandbox-` prefix."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.core.demo import seeders
from apps.core.progress import Progress
from apps.core.tenancy import SANDBOX, sandbox_demo_logins, tenant_session


class Command(BaseCommand):
    help = "Load demo queues, agents, cases, merchants, stores with inventory and health specs."

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="hide progress bars")

    def handle(self, *args, no_progress=False, **options):
        progress = Progress(enabled=False if no_progress else None)
        summary = self.seed(progress)
        if settings.SANDBOX_ENABLED:
            # The sandbox's logins are production's with a prefix (sandbox-merchant1 / merchant).
            with tenant_session(SANDBOX), sandbox_demo_logins():
                summary.update({f"{SANDBOX}.{key}": n for key, n in self.seed(progress).items()})
        width = max(len(k) for k in summary)
        self.stdout.write(self.style.SUCCESS("Demo data ready:"))
        for key, value in summary.items():
            self.stdout.write(f"  {key:<{width}}  {value:>8,}")

    def seed(self, progress: Progress) -> dict[str, int]:
        summary: dict[str, int] = {}
        ordered = seeders()
        for seeder in progress.iter(ordered, total=len(ordered), desc="seeding"):
            with transaction.atomic():
                summary.update(seeder.seed(progress=progress))
        # Later seeders add agents' and merchants' logins: count users once all have run.
        summary["users"] = get_user_model().objects.count()
        return summary
