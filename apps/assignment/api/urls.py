"""Agent API routes (mounted at /api/v1/agent/)."""

from django.urls import path

from apps.assignment.api import views

urlpatterns = [
    path("", views.AgentMeView.as_view(), name="agent-me"),
    path("presence/", views.AgentPresenceView.as_view(), name="agent-presence"),
    path("heartbeat/", views.AgentHeartbeatView.as_view(), name="agent-heartbeat"),
    path("offers/", views.OfferListView.as_view(), name="agent-offers"),
    path("offers/<int:offer_id>/accept/", views.OfferAcceptView.as_view(), name="agent-offer-accept"),
    path("offers/<int:offer_id>/decline/", views.OfferDeclineView.as_view(), name="agent-offer-decline"),
    path("next-case/", views.NextCaseView.as_view(), name="agent-next-case"),
    path("state/", views.AgentStateView.as_view(), name="agent-state"),
]

# The softphone's webhook, mounted at /api/v1/calls/ (config/urls.py): it is no agent's own API.
calls_urlpatterns = [
    path("", views.CallEventView.as_view(), name="calls"),
]
