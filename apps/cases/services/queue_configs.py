"""Queue configuration: the JSON Schema a config must satisfy, publishing and activating versions,
and the one validation of a case's dynamic fields against its queue's active config."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from apps.assignment.routing import STRATEGIES
from apps.cases import selectors
from apps.cases.metric_definitions import REOPEN_WINDOW_KEY
from apps.cases.models import STATUS_SCHEMA, Channel, ConfigState, Priority, Queue, QueueConfig, Status
from apps.cases.targeting import TARGETING_SCHEMA
from apps.core.errors import ApplicationError
from apps.core.validation import json_errors, schema_errors

# Schema types a dynamic field may have (the admin renders a form field for each).
SUPPORTED_TYPES = ("string", "integer", "number", "boolean")
# The SLA targets the metrics read (apps.cases.metrics), in minutes.
SLA_TARGETS = ("first_response_minutes", "resolution_minutes")
# The queue's DWR/FCR window in days (metric_definitions.reopen_window); a year at most, since a
# case's did-we-resolve stays undecided until its window has passed.
REOPEN_WINDOW_MAX_DAYS = 365

_SKILLS = "'skills' must be a list of distinct skill names (up to 50 characters each)."
_WEIGHTS = "'priority_weights' must map priorities \"1\" to \"4\" to weights of 0 or more."
_OPTIONAL = "'optional_skills' must be a list of distinct skill names (up to 50 characters each)."
_REQUIRED = "'required_skills' must be a list of distinct skill names (up to 50 characters each)."
_RELAX = "'relax_after_seconds' must be an integer of 0 or more."
_CHANNEL_WEIGHTS = (f"'channel_weights' must map channels ({', '.join(Channel.values)}) to whole "
                    "capacity units from 1 to 100.")
_OFFERS = "'offers' must be true (offer first, the agent accepts) or false (assign directly)."
_OFFER_TIMEOUT = "'offer_timeout_seconds' must be a whole number of seconds from 5 to 3600."
_STRATEGY = f"'strategy' must be one of {', '.join(STRATEGIES)}."
_PROPERTY_TYPE = f"Property '{{path[2]}}': type must be one of {', '.join(SUPPORTED_TYPES)}."

# A config as one document (`x-message`: see apps.core.validation.MESSAGE_KEYWORD). A key that
# nothing reads is refused: a typo in an SLA target or a routing key would silently do nothing.
QUEUE_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "fields_schema": {
            "type": "object",
            "x-message": "Must be a JSON object (a JSON Schema).",
            "properties": {
                "type": {"const": "object",
                         "x-message": "The schema of dynamic fields must describe an object."},
                "properties": {
                    "type": "object",
                    "x-message": "'properties' must map field names to their schemas.",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["type"],
                        "x-message": _PROPERTY_TYPE,
                        "properties": {"type": {"enum": list(SUPPORTED_TYPES), "x-message": _PROPERTY_TYPE}},
                    },
                },
            },
        },
        "initial_status": STATUS_SCHEMA,
        "transitions": {
            "type": "object",
            "minProperties": 1,
            "x-message": "Must be an object mapping a status to the list of statuses it may move to.",
            "propertyNames": STATUS_SCHEMA,
            "additionalProperties": {
                "type": "array",
                "uniqueItems": True,
                "x-message": "'{path[1]}' must map to a list of distinct statuses.",
                "items": {"enum": Status.values, "x-message": "'{path[1]}' -> unknown status '{value}'."},
            },
        },
        "sla": {
            "type": "object",
            "additionalProperties": False,
            "x-message": f"Must map SLA targets ({', '.join(SLA_TARGETS)}) and '{REOPEN_WINDOW_KEY}' to "
                         "positive integers.",
            "properties": {
                **{target: {"type": "integer", "minimum": 1,
                            "x-message": "'{path[1]}' must be a positive integer."}
                   for target in SLA_TARGETS},
                REOPEN_WINDOW_KEY: {"type": "integer", "minimum": 1, "maximum": REOPEN_WINDOW_MAX_DAYS,
                                    "x-message": f"'{{path[1]}}' must be a whole number of days from 1 to "
                                                 f"{REOPEN_WINDOW_MAX_DAYS}."},
            },
        },
        "routing": {
            "type": "object",
            "additionalProperties": False,
            "x-message": "Must be an object.",
            "properties": {
                # An agent's skill is at most 50 characters (apps.assignment.models.Agent.skills).
                "skills": {"type": "array", "uniqueItems": True, "x-message": _SKILLS,
                           "items": {"type": "string", "minLength": 1, "maxLength": 50,
                                     "x-message": _SKILLS}},
                "priority_weights": {"type": "object", "x-message": _WEIGHTS,
                                     "propertyNames": {"enum": [str(p) for p in Priority.values],
                                                       "x-message": _WEIGHTS},
                                     "additionalProperties": {"type": "number", "minimum": 0,
                                                              "x-message": _WEIGHTS}},
                # Read by apps.assignment.routing.
                **{name: {"type": "array", "uniqueItems": True, "x-message": message,
                          "items": {"type": "string", "minLength": 1, "maxLength": 50, "x-message": message}}
                   for name, message in (("required_skills", _REQUIRED), ("optional_skills", _OPTIONAL))},
                "relax_after_seconds": {"type": "integer", "minimum": 0, "x-message": _RELAX},
                "channel_weights": {"type": "object", "x-message": _CHANNEL_WEIGHTS,
                                    "propertyNames": {"enum": Channel.values, "x-message": _CHANNEL_WEIGHTS},
                                    "additionalProperties": {"type": "integer", "minimum": 1, "maximum": 100,
                                                             "x-message": _CHANNEL_WEIGHTS}},
                "strategy": {"enum": list(STRATEGIES), "x-message": _STRATEGY},
                "offers": {"type": "boolean", "x-message": _OFFERS},
                "offer_timeout_seconds": {"type": "integer", "minimum": 5, "maximum": 3600,
                                          "x-message": _OFFER_TIMEOUT},
            },
        },
        "targeting": TARGETING_SCHEMA,
    },
}


# The keys of a config document, in the order people read them (YAML export, diffs).
QUEUE_CONFIG_KEYS = ("fields_schema", "initial_status", "transitions", "sla", "routing", "targeting")
# What a key left out of a document means (only `transitions` must be given).
QUEUE_CONFIG_DEFAULTS: dict[str, Any] = {"fields_schema": {}, "initial_status": Status.NEW, "sla": {},
                                         "routing": {}, "targeting": {}}


def queue_config_document_errors(document: Any) -> dict[str, list[str]]:
    """Everything the meta-schema finds wrong with a config document, by dotted path
    ("routing.offer_timeout_seconds", "fields_schema.properties.reason"); empty when valid."""
    if not isinstance(document, dict):
        return {"non_field_errors": [f"A queue config is a mapping of {', '.join(QUEUE_CONFIG_KEYS)}."]}
    errors: dict[str, list[str]] = {
        key: [f"Unknown key; a config has {', '.join(QUEUE_CONFIG_KEYS)}."]
        for key in document if key not in QUEUE_CONFIG_KEYS}
    if "transitions" not in document:
        errors["transitions"] = ["This field is required."]
    for key, messages in json_errors(document, QUEUE_CONFIG_SCHEMA, own_messages=True).items():
        bucket = errors.setdefault(key, [])
        bucket.extend(message for message in dict.fromkeys(messages) if message not in bucket)
    # What a schema cannot say: the document is itself a JSON Schema (when it is not, nothing
    # else about it is worth reporting), and a new case can leave its initial status.
    fields_schema, transitions = document.get("fields_schema"), document.get("transitions")
    initial_status = document.get("initial_status", Status.NEW)
    if isinstance(fields_schema, dict):
        problems = schema_errors(fields_schema)
        if problems:
            for key in [k for k in errors if k.startswith("fields_schema")]:
                del errors[key]
            errors["fields_schema"] = [f"Not a valid JSON Schema: {p}" for p in problems]
    if isinstance(transitions, dict) and transitions and initial_status in Status.values \
            and transitions.get(initial_status) in (None, []):
        errors.setdefault("transitions", []).append(
            f"The initial status '{initial_status}' has no outgoing transitions.")
    return errors


def queue_config_errors(*, fields_schema: Any, transitions: Any, initial_status: str = Status.NEW,
                        sla: Any = None, routing: Any = None,
                        targeting_rules: Any = None) -> dict[str, list[str]]:
    """Everything wrong with a queue config, keyed by field; targeting by dotted path (empty when valid)."""
    document = {"fields_schema": fields_schema, "transitions": transitions, "initial_status": initial_status}
    for name, value in (("sla", sla), ("routing", routing), ("targeting", targeting_rules)):
        if value is not None:
            document[name] = value
    errors: dict[str, list[str]] = {}
    for key, messages in queue_config_document_errors(document).items():
        field = key if key.startswith("targeting.") else key.split(".")[0]
        bucket = errors.setdefault(field, [])
        bucket.extend(message for message in messages if message not in bucket)
    return errors


def queue_config_lock(queue_id: int) -> Queue:
    """Lock the queue row: versions of one queue are numbered and activated one writer at a time."""
    return Queue.objects.select_for_update().get(pk=queue_id)


def queue_config_next_version(queue_id: int) -> int:
    return (QueueConfig.objects.filter(queue_id=queue_id).aggregate(v=Max("version"))["v"] or 0) + 1


def queue_config_make_active(*, queue: Queue, document: dict, user=None, comment: str = "",
                             based_on: QueueConfig | None = None,
                             draft: QueueConfig | None = None) -> QueueConfig:
    """Publish `document` as the queue's active version: the draft row itself when given, else a
    new version. The caller holds the queue lock and has validated the document."""
    now = timezone.now()
    QueueConfig.objects.filter(queue=queue, is_active=True).update(is_active=False)
    values = {**QUEUE_CONFIG_DEFAULTS, **document}
    if draft is not None:
        for key in QUEUE_CONFIG_KEYS:
            setattr(draft, key, values[key])
        draft.state, draft.is_active, draft.published_at, draft.published_by = \
            ConfigState.PUBLISHED, True, now, user
        draft.comment = comment or draft.comment
        draft.based_on = based_on
        draft.save()
        return draft
    return QueueConfig.objects.create(
        queue=queue, version=queue_config_next_version(queue.pk), is_active=True, state=ConfigState.PUBLISHED,
        created_by=user, published_at=now, published_by=user, comment=comment, based_on=based_on,
        **{key: values[key] for key in QUEUE_CONFIG_KEYS})


@transaction.atomic
def queue_config_publish(*, queue: Queue, fields_schema: dict, transitions: dict,
                         initial_status: str = Status.NEW, sla: dict | None = None,
                         routing: dict | None = None, targeting_rules: dict | None = None,
                         user=None, comment: str = "") -> QueueConfig:
    """Validate (meta-schema) and publish a new config version and make it the queue's active one.
    Ops' own path checks more: `queue_config_publish_draft` (config_versions)."""
    errors = queue_config_errors(fields_schema=fields_schema, transitions=transitions,
                                 initial_status=initial_status, sla=sla, routing=routing,
                                 targeting_rules=targeting_rules)
    if errors:
        raise ApplicationError("The queue configuration is invalid.", errors=errors)
    queue_config_lock(queue.pk)
    document = {"fields_schema": fields_schema, "transitions": transitions, "initial_status": initial_status,
                "sla": sla or {}, "routing": routing or {}, "targeting": targeting_rules or {}}
    return queue_config_make_active(queue=queue, document=document, user=user, comment=comment,
                                    based_on=selectors.queue_config_active(queue))


@transaction.atomic
def queue_config_activate(*, config: QueueConfig) -> QueueConfig:
    """Make an earlier version active again (a rollback of a bad edit)."""
    if config.state != ConfigState.PUBLISHED:
        raise ApplicationError("A draft cannot be made active; publish it.",
                               errors={"state": ["Only a published version can be active."]})
    queue_config_lock(config.queue_id)
    QueueConfig.objects.filter(queue_id=config.queue_id, is_active=True).exclude(pk=config.pk).update(
        is_active=False
    )
    QueueConfig.objects.filter(pk=config.pk).update(is_active=True)
    config.is_active = True
    return config


@transaction.atomic
def queue_create(*, slug: str, name: str, **config: Any) -> Queue:
    """A queue with its first active config (keyword arguments of `queue_config_publish`)."""
    queue = Queue.objects.create(slug=slug, name=name)
    queue_config_publish(queue=queue, **config)
    return queue


def _active_config(queue_id: int) -> QueueConfig:
    config = selectors.queue_config_active(queue_id)
    if config is None:
        raise ApplicationError("The queue has no active configuration.",
                               errors={"queue": ["No active config."]})
    return config


# Dynamic fields: the ONE validation used by every write path ------------------------------


def _fields_object(fields: Any) -> dict:
    """`fields` itself, refused unless it is an object (also a partial update's patch)."""
    if not isinstance(fields, dict):
        raise ApplicationError("Dynamic fields must be an object.",
                               errors={"fields": ["Must be a JSON object."]})
    return fields


def case_fields_validate(*, config: QueueConfig, fields: Any) -> dict:
    """Validate dynamic `fields` against the queue's schema; field-level errors as "fields.<path>"."""
    errors = json_errors(_fields_object(fields), config.fields_schema or {})
    if errors:
        raise ApplicationError(
            "Dynamic fields are invalid.",
            errors={("fields" if key == "non_field_errors" else f"fields.{key}"): msgs
                    for key, msgs in errors.items()},
        )
    return fields

