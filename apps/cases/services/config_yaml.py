"""Queue configs as code: a queue's config as one YAML document (`slug`, `name` and the config
keys), exported and imported through the same checks as every other path, one file or a folder."""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.cases import selectors
from apps.cases.models import Queue, QueueConfig
from apps.cases.services.config_checks import queue_config_check
from apps.cases.services.config_versions import queue_config_document, queue_config_draft_save
from apps.cases.services.queue_configs import (
    queue_config_document_errors,
    queue_config_lock,
    queue_config_make_active,
)
from apps.core.errors import ApplicationError, NotFound
from apps.health.specs import document_parse

HEADER_KEYS = ("slug", "name")


def queue_config_export_yaml(queue: Queue) -> str:
    """The queue's active config as YAML, keys in reading order."""
    config = selectors.queue_config_active(queue)
    if config is None:
        raise NotFound(f"Queue '{queue.slug}' has no active configuration.")
    document = {"slug": queue.slug, "name": queue.name, **queue_config_document(config)}
    header = f"# Queue '{queue.slug}', config version {config.version}.\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


@dataclass
class ParsedConfig:
    slug: str = ""
    name: str = ""
    document: dict = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)


def queue_config_parse_yaml(text: str, *, publish: bool, slug: str | None = None) -> ParsedConfig:
    """Parse (with the health specs' bounded YAML loader) and check a document, writing nothing.
    Publishing needs the full check clean; a draft only the meta-schema."""
    data, _, _, errors = document_parse(text)
    if errors:
        return ParsedConfig(errors=errors)
    if not isinstance(data, dict):
        return ParsedConfig(errors={"document": ["The document must be a mapping: 'slug' and the config."]})
    parsed = ParsedConfig(slug=data.get("slug", slug) or "", name=data.get("name") or "")
    queue_slug = Queue._meta.get_field("slug")
    if not isinstance(parsed.slug, str) or not parsed.slug:
        parsed.errors["slug"] = ["This field is required."]
    elif slug is not None and parsed.slug != slug:
        parsed.errors["slug"] = [f"The document is for queue '{parsed.slug}', not '{slug}'."]
    else:
        try:
            queue_slug.clean(parsed.slug, None)
        except ValidationError as exc:  # the slug's own rules (pattern, length)
            parsed.errors["slug"] = exc.messages
    if not isinstance(parsed.name, str) or len(parsed.name) > Queue._meta.get_field("name").max_length:
        parsed.errors["name"] = ["A text of at most 200 characters."]
    parsed.document = {key: value for key, value in data.items() if key not in HEADER_KEYS}
    if parsed.errors:
        return parsed
    meta = queue_config_document_errors(parsed.document)
    if meta:
        parsed.errors = meta
        return parsed
    queue = Queue.objects.filter(slug=parsed.slug).first()
    report = queue_config_check(queue=queue, document=parsed.document)
    parsed.warnings = report.warnings
    if publish:
        parsed.errors = report.errors
    else:  # a draft may be saved with them: publishing is what they refuse
        for key, messages in report.errors.items():
            parsed.warnings.setdefault(key, []).extend(messages)
    return parsed


def _apply(parsed: ParsedConfig, *, user, publish: bool) -> QueueConfig:
    queue, created = Queue.objects.get_or_create(slug=parsed.slug,
                                                 defaults={"name": parsed.name or parsed.slug})
    if not created and parsed.name and parsed.name != queue.name:
        queue.name = parsed.name
        queue.save(update_fields=["name"])
    if not publish:
        return queue_config_draft_save(queue=queue, document=parsed.document, user=user,
                                       comment="Imported from YAML.")
    queue_config_lock(queue.pk)
    active = selectors.queue_config_active(queue)
    return queue_config_make_active(queue=queue, document=parsed.document, user=user,
                                    comment="Imported from YAML.", based_on=active)


@transaction.atomic
def queue_config_import_yaml(*, text: str, user, publish: bool, slug: str | None = None) -> QueueConfig:
    """Save a YAML document as a draft, or publish it; creates the queue when missing. `slug`: the
    queue the caller means (the document must agree)."""
    parsed = queue_config_parse_yaml(text, publish=publish, slug=slug)
    if parsed.errors:
        raise ApplicationError("The queue configuration is invalid.", errors=parsed.errors)
    config = _apply(parsed, user=user, publish=publish)
    config.warnings = parsed.warnings  # what the check allowed, for the caller to show
    return config


@dataclass
class FileResult:
    name: str
    slug: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    config: QueueConfig | None = None


def queue_configs_apply_yaml(*, files: list[tuple[str, str]], user=None, publish: bool = True,
                             partial: bool = False) -> list[FileResult]:
    """Apply (name, text) documents, one per queue. Every file is checked first; with any invalid,
    none is applied unless `partial` (then each valid one is). All applied in one transaction."""
    results, parsed_by_name = [], {}
    seen: dict[str, str] = {}
    for name, text in files:
        parsed = queue_config_parse_yaml(text, publish=publish)
        if parsed.slug and parsed.slug in seen and not parsed.errors:
            parsed.errors["slug"] = [f"Queue '{parsed.slug}' is also configured by {seen[parsed.slug]}."]
        seen.setdefault(parsed.slug, name)
        results.append(FileResult(name=name, slug=parsed.slug, errors=parsed.errors,
                                  warnings=parsed.warnings))
        parsed_by_name[name] = parsed
    if any(r.errors for r in results) and not partial:
        return results
    with transaction.atomic():
        for result in results:
            if not result.errors:
                result.config = _apply(parsed_by_name[result.name], user=user, publish=publish)
    return results
