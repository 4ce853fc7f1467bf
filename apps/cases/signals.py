"""Signals other apps subscribe to, so the cases app never imports them (the assignment engine
listens for cases that start waiting and runs a batch at once instead of at its next beat)."""

from django.dispatch import Signal

# Sent after commit when cases start waiting for an agent (created, transferred, unassigned,
# reopened without one). Keyword argument: `queue_ids`, the queues they wait in.
cases_waiting = Signal()

# Sent after commit when an agent's set of open cases changed (assigned to or taken from them,
# a status change, a transfer). Keyword argument: `agent_ids`. The agent workspace listens.
case_agents_changed = Signal()
