"""Write use cases of assignment, one module per use case; every name callers use is here."""

from apps.assignment.realtime import agent_state_publish as agent_states_publish
from apps.assignment.services.calls import (
    CALL_EVENTS,
    MAX_CALL_DURATION_SECONDS,
    SOFTPHONE_USERNAME,
    CallAnswer,
    call_event_record,
    phone_number_normalise,
    softphone_user,
)
from apps.assignment.services.counters import (
    COUNTERS_CONSUMER,
    counters_feed_consume,
    counters_fold,
    counters_reconcile,
)
from apps.assignment.services.engine import BatchResult, assignment_batch_run, assignment_worker_warm
from apps.assignment.services.offers import (
    agent_for_user,
    assignment_batch_request,
    offer_accept,
    offer_decline,
    offers_expire,
    offers_record,
)
from apps.assignment.services.onboarding import (
    ImportReport,
    agent_invite,
    agents_import_csv,
    channel_weights_parse,
    channel_weights_text,
    invitation_link,
)
from apps.assignment.services.presence import agent_heartbeat, agent_presence_set, agents_presence_expire
from apps.assignment.services.pull import PULL_STRATEGY, case_next_for_agent

__all__ = [
    "CALL_EVENTS",
    "COUNTERS_CONSUMER",
    "MAX_CALL_DURATION_SECONDS",
    "PULL_STRATEGY",
    "SOFTPHONE_USERNAME",
    "BatchResult",
    "CallAnswer",
    "ImportReport",
    "agent_for_user",
    "agent_heartbeat",
    "agent_invite",
    "agent_states_publish",
    "agent_presence_set",
    "agents_import_csv",
    "agents_presence_expire",
    "assignment_batch_request",
    "assignment_batch_run",
    "assignment_worker_warm",
    "call_event_record",
    "case_next_for_agent",
    "channel_weights_parse",
    "channel_weights_text",
    "counters_feed_consume",
    "counters_fold",
    "counters_reconcile",
    "invitation_link",
    "offer_accept",
    "offer_decline",
    "offers_expire",
    "offers_record",
    "phone_number_normalise",
    "softphone_user",
]
