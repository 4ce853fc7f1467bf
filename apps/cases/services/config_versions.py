"""Queue config versions: drafts that editors save, publishing them (ops), rollback as a new
version, field-level diffs between versions, and renaming a dynamic field with its stored values."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from apps.cases import selectors
from apps.cases.models import Case, ConfigState, Queue, QueueConfig
from apps.cases.services.config_checks import queue_config_check
from apps.cases.services.queue_configs import (
    QUEUE_CONFIG_DEFAULTS,
    QUEUE_CONFIG_KEYS,
    queue_config_document_errors,
    queue_config_lock,
    queue_config_make_active,
    queue_config_next_version,
)
from apps.core.errors import ApplicationError, Conflict

# A dynamic field's name: what the case filters accept as `field.<name>` (apps.cases.api.filters).
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
RENAME_BATCH = 5000


def queue_config_document(config: QueueConfig) -> dict:
    """A version's content as one document (the keys of QUEUE_CONFIG_KEYS)."""
    return {key: copy.deepcopy(getattr(config, key)) for key in QUEUE_CONFIG_KEYS}


def _complete(document: dict) -> dict:
    return {**QUEUE_CONFIG_DEFAULTS, **document}


def _refuse_invalid(errors: dict[str, list[str]]) -> None:
    if errors:
        raise ApplicationError("The queue configuration is invalid.", errors=errors)


@transaction.atomic
def queue_config_draft_save(*, queue: Queue, document: Any, user, comment: str = "",
                            draft: QueueConfig | None = None) -> QueueConfig:
    """Save a draft: a new version row, or `draft` itself saved again. Meta-schema errors refuse;
    cross-check warnings (and errors) are for publishing to decide."""
    _refuse_invalid(queue_config_document_errors(document))
    queue_config_lock(queue.pk)
    values = _complete(document)
    if draft is not None:
        draft = QueueConfig.objects.select_for_update().get(pk=draft.pk)
        if draft.state != ConfigState.DRAFT or draft.queue_id != queue.pk:
            raise Conflict("Only a draft of this queue can be saved again; published versions never change.",
                           errors={"draft": [f"Version {draft.version} is {draft.state}."]})
        for key in QUEUE_CONFIG_KEYS:
            setattr(draft, key, values[key])
        draft.comment = comment or draft.comment
        draft.save()
        return draft
    return QueueConfig.objects.create(
        queue=queue, version=queue_config_next_version(queue.pk), state=ConfigState.DRAFT, comment=comment,
        based_on=selectors.queue_config_active(queue), created_by=user,
        **{key: values[key] for key in QUEUE_CONFIG_KEYS})


def _publish_checked(*, queue: Queue, document: dict, user, comment: str, based_on: QueueConfig | None,
                     draft: QueueConfig | None = None) -> QueueConfig:
    report = queue_config_check(queue=queue, document=document)
    _refuse_invalid(report.errors)
    return queue_config_make_active(queue=queue, document=document, user=user, comment=comment,
                                    based_on=based_on, draft=draft)


@transaction.atomic
def queue_config_publish_draft(*, draft: QueueConfig, user, comment: str = "",
                               rebase: bool = False) -> QueueConfig:
    """Publish a draft as the queue's active version, after the full check. A draft started from
    a version that is no longer active is refused (code "rebase_needed") unless `rebase`."""
    queue = queue_config_lock(draft.queue_id)
    draft = QueueConfig.objects.select_for_update().get(pk=draft.pk)
    if draft.state != ConfigState.DRAFT:
        raise Conflict(f"Version {draft.version} is already published.",
                       errors={"draft": ["Already published."]})
    active = selectors.queue_config_active(queue)
    if active is not None and draft.based_on_id != active.pk and not rebase:
        started = f"version {draft.based_on.version}" if draft.based_on else "no version"
        raise Conflict(
            f"Version {active.version} is active now; this draft started from {started}. "
            "Review the changes since and publish again with rebase.",
            errors={"based_on": [f"Rebase needed: version {active.version} is active."]},
            code="rebase_needed")
    return _publish_checked(queue=queue, document=queue_config_document(draft), user=user, comment=comment,
                            based_on=active, draft=draft)


@transaction.atomic
def queue_config_rollback(*, config: QueueConfig, user, comment: str = "") -> QueueConfig:
    """Publish an earlier version's content as a new version; history is never rewritten."""
    queue = queue_config_lock(config.queue_id)
    return _publish_checked(queue=queue, document=queue_config_document(config), user=user,
                            comment=comment or f"Rollback to version {config.version}.",
                            based_on=selectors.queue_config_active(queue))


# Diffs --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    path: str  # dotted: "fields_schema.properties.reason.enum"
    kind: str  # added | removed | changed
    before: Any = None
    after: Any = None


def queue_config_diff(before: dict, after: dict) -> list[Change]:
    """Field-level differences between two config documents, in document order. Mappings are
    compared key by key; any other value (a list, a number) changes as a whole."""
    changes: list[Change] = []
    _diff(before, after, "", changes)
    return changes


def _diff(before: Any, after: Any, path: str, changes: list[Change]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in after:
                changes.append(Change(where, "removed", before=before[key]))
            elif key not in before:
                changes.append(Change(where, "added", after=after[key]))
            else:
                _diff(before[key], after[key], where, changes)
    elif before != after or type(before) is not type(after):
        changes.append(Change(path, "changed", before=before, after=after))


# Renaming a dynamic field -----------------------------------------------------------------------


def _renamed(document: dict, old: str, new: str) -> dict:
    document = copy.deepcopy(document)
    schema = document["fields_schema"]
    schema["properties"] = {(new if name == old else name): prop
                            for name, prop in schema["properties"].items()}
    if isinstance(schema.get("required"), list):
        schema["required"] = [new if name == old else name for name in schema["required"]]
    return document


def _cases_rename_field(queue: Queue, old: str, new: str) -> int:
    """Rename the key in every case of the queue, one UPDATE per batch of ids (keyset order)."""
    table = Case._meta.db_table
    sql = (f"WITH batch AS (SELECT id FROM {table} WHERE queue_id = %s AND fields ? %s::text "
           f"AND id > %s::uuid ORDER BY id LIMIT %s) "
           f"UPDATE {table} AS c SET fields = (c.fields - %s::text) "
           f"|| jsonb_build_object(%s::text, c.fields -> %s::text) "
           f"FROM batch WHERE c.id = batch.id RETURNING c.id")
    renamed, after = 0, "00000000-0000-0000-0000-000000000000"
    with connection.cursor() as cursor:
        while True:
            cursor.execute(sql, [queue.pk, old, after, RENAME_BATCH, old, new, old])
            ids = [row[0] for row in cursor.fetchall()]
            renamed += len(ids)
            if len(ids) < RENAME_BATCH:
                return renamed
            after = max(ids)


@transaction.atomic
def queue_config_field_rename(*, queue: Queue, old: str, new: str, user, comment: str = "") -> QueueConfig:
    """Publish a version with dynamic field `old` renamed to `new`, and rename the key in the stored
    fields of all the queue's cases (open and closed) in the same transaction."""
    queue = queue_config_lock(queue.pk)
    active = selectors.queue_config_active(queue)
    properties = ((active.fields_schema or {}).get("properties") or {}) if active else {}
    if old not in properties:
        raise ApplicationError(f"The queue has no field '{old}'.", errors={"old": ["No such field."]})
    if not isinstance(new, str) or not FIELD_NAME.fullmatch(new):
        raise ApplicationError("Invalid field name.", errors={
            "new": ["A letter or underscore, then letters, digits or underscores (at most 64)."]})
    if new in properties:
        raise ApplicationError(f"The queue already has a field '{new}'.", errors={"new": ["Already exists."]})
    document = _renamed(queue_config_document(active), old, new)
    _refuse_invalid(queue_config_document_errors(document))
    renamed = _cases_rename_field(queue, old, new)
    return queue_config_make_active(
        queue=queue, document=document, user=user, based_on=active,
        comment=comment or f"Renamed field '{old}' to '{new}' ({renamed} cases migrated).")
