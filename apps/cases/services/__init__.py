"""Write use cases of the cases app, one module per use case; every name callers use is here.

Every change to a case writes its CaseEvent(s) in the same transaction (`_events._events_write`),
so the timeline and the change feed are complete.
"""

from apps.cases.models import CORE_EDITABLE, case_core_errors
from apps.cases.services.case_stats import CASE_METRICS_CONSUMER, case_metrics_rollup, case_stats_fold
from apps.cases.services.cases import (
    BulkAssignment,
    BulkResult,
    case_add_message,
    case_add_note,
    case_assign,
    case_create,
    case_legacy_transfer_back,
    case_legacy_transfer_out,
    case_transfer,
    case_transition,
    case_update,
    cases_assign_many,
    cases_bulk_apply,
    cases_bulk_create,
)
from apps.cases.services.config_checks import ConfigReport, DryRun, queue_config_check, queue_config_dry_run
from apps.cases.services.config_versions import (
    Change,
    queue_config_diff,
    queue_config_document,
    queue_config_draft_save,
    queue_config_field_rename,
    queue_config_publish_draft,
    queue_config_rollback,
)
from apps.cases.services.config_yaml import (
    FileResult,
    queue_config_export_yaml,
    queue_config_import_yaml,
    queue_configs_apply_yaml,
)
from apps.cases.services.email_in import (
    INBOUND_EMAIL_USERNAME,
    InboundResult,
    inbound_email_user,
    message_receive_email,
)
from apps.cases.services.email_out import (
    message_deliver,
    message_delivery_countdown,
    message_notify_agent,
    messages_deliver_pending,
)
from apps.cases.services.legacy_import import ImportSummary, cases_import_legacy
from apps.cases.services.messages import (
    CASE_TOKEN,
    case_token,
    message_post_from_hub,
    message_record,
    message_send_from_agent,
    subject_with_token,
)
from apps.cases.services.offers import case_offer_accept, cases_offers_release
from apps.cases.services.proactive_signals import SignalResult, signal_ingest
from apps.cases.services.queue_configs import (
    QUEUE_CONFIG_KEYS,
    QUEUE_CONFIG_SCHEMA,
    SLA_TARGETS,
    SUPPORTED_TYPES,
    case_fields_validate,
    queue_config_activate,
    queue_config_document_errors,
    queue_config_errors,
    queue_config_publish,
    queue_create,
)

__all__ = [
    "CASE_METRICS_CONSUMER",
    "CASE_TOKEN",
    "CORE_EDITABLE",
    "INBOUND_EMAIL_USERNAME",
    "QUEUE_CONFIG_KEYS",
    "QUEUE_CONFIG_SCHEMA",
    "SLA_TARGETS",
    "SUPPORTED_TYPES",
    "BulkAssignment",
    "BulkResult",
    "Change",
    "ConfigReport",
    "DryRun",
    "FileResult",
    "ImportSummary",
    "InboundResult",
    "SignalResult",
    "case_add_message",
    "case_add_note",
    "case_assign",
    "case_core_errors",
    "case_create",
    "case_fields_validate",
    "case_legacy_transfer_back",
    "case_legacy_transfer_out",
    "case_metrics_rollup",
    "case_offer_accept",
    "case_stats_fold",
    "case_token",
    "case_transfer",
    "case_transition",
    "case_update",
    "cases_assign_many",
    "cases_bulk_apply",
    "cases_bulk_create",
    "cases_import_legacy",
    "cases_offers_release",
    "inbound_email_user",
    "message_deliver",
    "message_delivery_countdown",
    "message_notify_agent",
    "message_post_from_hub",
    "message_receive_email",
    "message_record",
    "message_send_from_agent",
    "messages_deliver_pending",
    "queue_config_activate",
    "queue_config_check",
    "queue_config_diff",
    "queue_config_document",
    "queue_config_document_errors",
    "queue_config_draft_save",
    "queue_config_dry_run",
    "queue_config_errors",
    "queue_config_export_yaml",
    "queue_config_field_rename",
    "queue_config_import_yaml",
    "queue_config_publish",
    "queue_config_publish_draft",
    "queue_config_rollback",
    "queue_configs_apply_yaml",
    "queue_create",
    "signal_ingest",
    "subject_with_token",
]

# Support metrics rollups (change-feed consumer).
from apps.cases.services.metric_rollups import (
    METRIC_ROLLUPS_CONSUMER,
    metric_rollups_consume,
    metric_rollups_fold,
    metric_rollups_settle,
)

__all__ += ["METRIC_ROLLUPS_CONSUMER", "metric_rollups_consume", "metric_rollups_fold",
            "metric_rollups_settle"]
