"""API routes of the health app (mounted at /api/v1/health/)."""

from django.urls import path

from apps.health.api import views

urlpatterns = [
    path("gate/", views.GateView.as_view(), name="health-gate"),
    path("status/", views.StatusView.as_view(), name="health-status"),
    path("specs/", views.SpecListView.as_view(), name="health-spec-list"),
    path("specs/<str:name>/", views.SpecDetailView.as_view(), name="health-spec-detail"),
]
