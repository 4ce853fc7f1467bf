"""Websocket routes of all apps, collected in one place for the ASGI router."""

from django.urls import path

from apps.assignment.consumers import AgentConsumer
from apps.core.consumers import PingConsumer

websocket_urlpatterns = [
    path("ws/ping/", PingConsumer.as_asgi()),
    path("ws/agent/", AgentConsumer.as_asgi()),
]
