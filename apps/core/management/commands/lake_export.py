"""`manage.py lake_export [STREAM ...]`: export the lake streams now (what the beat job does)."""

from django.core.management.base import BaseCommand, CommandError

from apps.core.errors import ApplicationError
from apps.core.lake import lake_export, lake_streams


class Command(BaseCommand):
    help = "Write the new rows of every lake stream (or of those named) as Parquet files, exactly once."

    def add_arguments(self, parser):
        parser.add_argument("streams", nargs="*", help=f"default: all ({', '.join(lake_streams())})")

    def handle(self, *args, streams=(), **options):
        try:
            written = lake_export(streams=list(streams) or None)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        for stream, rows in written.items():
            self.stdout.write(f"{stream}: {rows} rows")
