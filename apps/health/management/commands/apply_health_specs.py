"""Sync health specs from a folder of YAML/JSON files (GitOps style): apply each file, delete the
specs whose files are gone, and report per file. Exits non-zero when any file is invalid."""

from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import ApplicationError
from apps.health.services import health_specs_sync_dir


class Command(BaseCommand):
    help = "Apply every *.yaml/*.yml/*.json health spec in DIR; specs whose file was removed are deleted."

    def add_arguments(self, parser):
        parser.add_argument("directory")

    def handle(self, *args, directory, **options):
        try:
            reports = health_specs_sync_dir(directory=directory)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        invalid = 0
        for report in reports:
            line = f"{report.action:<9} {report.spec:<30} {report.path}"
            if report.action == "invalid":
                invalid += 1
                self.stderr.write(self.style.ERROR(line))
                for field, messages in report.errors.items():
                    for message in messages:
                        self.stderr.write(f"    {field}: {message}")
            else:
                self.stdout.write(line)
        if invalid:
            raise CommandError(f"{invalid} invalid spec file(s); their specs were left unchanged.")
