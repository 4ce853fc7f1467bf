"""The context panel beside a case: the case's outside records, each read through the cache.
Never raises: a page that shows the panel renders whatever the outside systems do."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from apps.cases.context.models import ContextType
from apps.cases.context.services import ContextView, context_read

log = logging.getLogger(__name__)

# The case field that names each outside record.
CASE_REFS = ((ContextType.DELIVERY, "delivery_ref"), (ContextType.CUSTOMER, "customer_ref"),
             (ContextType.MERCHANT, "merchant_ref"))
MAX_FIELDS = 20


@dataclass(frozen=True)
class PanelItem:
    label: str
    view: ContextView
    fields: list[tuple[str, str]]  # shown as text (the template escapes it: outside data is untrusted)


def _fields(data: dict | None) -> list[tuple[str, str]]:
    if not data:
        return []
    shown = []
    for name, value in list(data.items())[:MAX_FIELDS]:
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        shown.append((str(name)[:80], text[:300]))
    return shown


def _read(type: str, key: str) -> ContextView:
    try:
        return context_read(type=type, key=key)
    except Exception as exc:  # the panel must never break the page it sits on
        log.exception("context panel: reading %s %s failed", type, key)
        return ContextView(type=type, key=key, data=None, fetched_at=None, refresh_failed=True,
                           reason=type_name(exc))


def type_name(exc: BaseException) -> str:
    return f"internal error ({type(exc).__name__})"


def case_context_panel(case) -> list[PanelItem]:
    """The panel's records for one case: its delivery, customer, merchant and assigned agent."""
    wanted = [(type, getattr(case, attr, "")) for type, attr in CASE_REFS]
    try:
        agent = case.assigned_agent
        if agent is not None:
            wanted.append((ContextType.AGENT, agent.user.get_username()))
    except Exception:
        log.exception("context panel: the case's agent could not be read")
    items = []
    for type, key in wanted:
        if key:
            view = _read(str(type), key)
            items.append(PanelItem(label=ContextType(type).label, view=view, fields=_fields(view.data)))
    return items
