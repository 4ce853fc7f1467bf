"""Load the demo data set (idempotent: running it twice leaves the same counts)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.core.demo import seeders
from apps.core.progress import Progress


class Command(BaseCommand):
    help = "Load demo queues, agents, cases, merchants, stores with inventory and health specs."

    def add_arguments(self, parser):
        parser.add_argument("--no-progress", action="store_true", help="hide progress bars")

    def handle(self, *args, no_progress=False, **options):
        progress = Progress(enabled=False if no_progress else None)
        summary: dict[str, int] = {}
        ordered = seeders()
        for seeder in progress.iter(ordered, total=len(ordered), desc="seeding"):
            with transaction.atomic():
                summary.update(seeder.seed(progress=progress))
        # Later seeders add agents' and merchants' logins: count users once all have run.
        summary["users"] = get_user_model().objects.count()
        width = max(len(k) for k in summary)
        self.stdout.write(self.style.SUCCESS("Demo data ready:"))
        for key, value in summary.items():
            self.stdout.write(f"  {key:<{width}}  {value:>8,}")
