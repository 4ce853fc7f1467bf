"""The agent workspace page (/admin/assignment/workspace/): presence, the offer popup, active
cases, next case and the case pane, kept live by apps.assignment.realtime (websocket push, with
short polls while the socket is down)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.middleware.csrf import get_token
from django.template.response import TemplateResponse
from django.urls import reverse

from apps.assignment import realtime
from apps.assignment.models import Agent

POLL_INTERVAL_MS = 2000
HEARTBEAT_INTERVAL_MS = 20_000
# The case pane's URL with this id swapped for the case's (the page builds it in JS).
_CASE_PLACEHOLDER = "00000000-0000-0000-0000-000000000000"


def workspace_view(request):
    agent = Agent.objects.filter(user_id=request.user.pk).first()
    if agent is None:
        raise PermissionDenied("The workspace is for agents.")
    config = {
        "agent": agent.pk,
        "poll_token": realtime.poll_token_mint(user_id=request.user.pk, agent_id=agent.pk),
        "csrf": get_token(request),
        "poll_ms": POLL_INTERVAL_MS,
        "heartbeat_ms": HEARTBEAT_INTERVAL_MS,
        "urls": {
            "socket": "/ws/agent/",
            "state": reverse("agent-state"),
            "presence": reverse("agent-presence"),
            "heartbeat": reverse("agent-heartbeat"),
            "next_case": reverse("agent-next-case"),
            "accept": reverse("agent-offer-accept", args=[0]),
            "decline": reverse("agent-offer-decline", args=[0]),
            "case": reverse("admin:cases_case_change", args=[_CASE_PLACEHOLDER]),
        },
        "case_placeholder": _CASE_PLACEHOLDER,
        "state": realtime.agent_state(agent.pk),
    }
    context = {
        **admin.site.each_context(request),
        "title": "Workspace",
        "agent": agent,
        "workspace_config": config,
        "heartbeat_ttl_s": settings.ASSIGNMENT_HEARTBEAT_TTL_SECONDS,
    }
    return TemplateResponse(request, "admin/assignment/workspace.html", context)
