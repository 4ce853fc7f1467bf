"""Non-API routes of the health app (/metrics)."""

from django.urls import path

from apps.health import views

urlpatterns = [
    path("metrics", views.metrics, name="metrics"),
]
