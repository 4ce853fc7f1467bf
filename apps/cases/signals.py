"""Signals other apps subscribe to, so the cases app never imports them (the assignment engine
listens for cases that start waiting and runs a batch at once instead of at its next beat)."""

from django.dispatch import Signal

# Sent after commit when cases start waiting for an agent (created, transferred, unassigned,
# reopened without one). Keyword argument: `queue_ids`, the queues they wait in.
cases_waiting = Signal()
