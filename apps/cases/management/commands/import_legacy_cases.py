"""`manage.py import_legacy_cases FILE`: import cases exported from the legacy CRM (idempotent)."""

import csv

from django.core.management.base import BaseCommand, CommandError

from apps.cases.legacy import count_rows, legacy_rows
from apps.cases.services import cases_import_legacy
from apps.core.errors import ApplicationError
from apps.core.progress import Progress


class Command(BaseCommand):
    help = ("Import legacy CRM cases from CSV (header row; `fields` column holds JSON) or JSON lines. "
            "Case ids are UUID v5 of the legacy id, so running it again imports nothing twice.")

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument("--format", choices=["csv", "jsonl"], help="default: from the file extension")
        bar = parser.add_mutually_exclusive_group()
        bar.add_argument("--progress", action="store_true", help="always show the progress bar")
        bar.add_argument("--no-progress", action="store_true", help="never show it (default: on a terminal)")
        parser.add_argument("--batch-size", type=int, default=1000)

    def handle(self, *args, file, format=None, progress=False, no_progress=False, batch_size=1000, **options):
        try:
            total = count_rows(file, fmt=format)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc}") from exc
        try:
            summary = cases_import_legacy(
                rows=legacy_rows(file, fmt=format), total=total, batch_size=batch_size,
                progress=Progress(enabled=True if progress else False if no_progress else None),
            )
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        except (UnicodeDecodeError, csv.Error) as exc:
            # Batches before the bad spot are kept; fix the file and run again (idempotent).
            raise CommandError(f"Cannot parse {file}: {exc}") from exc
        for number, errors in summary.errors:
            details = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in errors.items())
            self.stderr.write(f"row {number}: {details}")
        style = self.style.SUCCESS if not summary.errors else self.style.WARNING
        self.stdout.write(style(
            f"{summary.rows} rows: {summary.imported} imported, {summary.already_present} already present, "
            f"{len(summary.errors)} with errors."
        ))
