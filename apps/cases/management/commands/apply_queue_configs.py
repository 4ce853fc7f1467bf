"""`manage.py apply_queue_configs FOLDER`: apply the queue configs kept as code (one YAML per queue)."""

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from apps.cases.services import queue_configs_apply_yaml


class Command(BaseCommand):
    help = ("Apply every *.yaml / *.yml file of a folder, one queue each (`slug`, `name` and the config "
            "keys); a missing queue is created. Every file is checked first: if any is invalid, none is "
            "applied (unless --partial) and the command exits non-zero.")

    def add_arguments(self, parser):
        parser.add_argument("folder")
        parser.add_argument("--draft", action="store_true", help="save drafts instead of publishing")
        parser.add_argument("--partial", action="store_true",
                            help="apply the valid files even if some are not")
        parser.add_argument("--user", help="username recorded as the author")

    def handle(self, *args, folder, draft=False, partial=False, user=None, **options):
        path = Path(folder)
        if not path.is_dir():
            raise CommandError(f"{folder} is not a folder.")
        author = None
        if user:
            author = get_user_model().objects.filter(username=user).first()
            if author is None:
                raise CommandError(f"No user '{user}'.")
        files = []
        for file in sorted([*path.glob("*.yaml"), *path.glob("*.yml")]):
            try:
                files.append((file.name, file.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError) as exc:
                raise CommandError(f"Cannot read {file}: {exc}") from exc
        results = queue_configs_apply_yaml(files=files, user=author, publish=not draft, partial=partial)
        for result in results:
            for kind, found in (("error", result.errors), ("warning", result.warnings)):
                for where, messages in found.items():
                    self.stderr.write(f"{result.name}: {kind}: {where}: {' '.join(messages)}")
            if result.config is not None:
                self.stdout.write(f"{result.name}: {result.slug} version {result.config.version} "
                                  f"{'saved as draft' if draft else 'published'}.")
            elif not result.errors:
                self.stdout.write(f"{result.name}: valid, not applied.")
        invalid = [r.name for r in results if r.errors]
        if invalid:
            applied = "the valid ones were applied" if partial else "nothing was applied"
            raise CommandError(f"{len(invalid)} of {len(results)} files are invalid ({', '.join(invalid)}); "
                               f"{applied}.")
        self.stdout.write(self.style.SUCCESS(f"{len(results)} files applied."))
