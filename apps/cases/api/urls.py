"""API routes of the cases app (mounted at /api/v1/)."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from apps.cases.api.config import QueueConfigYamlView
from apps.cases.api.context import ContextEventsView
from apps.cases.api.email import InboundEmailView
from apps.cases.api.views import CaseViewSet, SignalView

router = SimpleRouter()
router.register("cases", CaseViewSet, basename="case")

urlpatterns = [
    path("signals/", SignalView.as_view(), name="signal-ingest"),
    path("email/inbound/", InboundEmailView.as_view(), name="email-inbound"),
    path("context/events/", ContextEventsView.as_view(), name="context-events"),
    path("queues/<slug:slug>/config.yaml", QueueConfigYamlView.as_view(), name="queue-config-yaml"),
    *router.urls,
]
