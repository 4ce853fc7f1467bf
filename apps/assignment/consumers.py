"""The agent workspace's websocket (/ws/agent/): a signed-in agent's tab joins their group, gets
their state on connect and on every change, and screen pops; actions go through the HTTP API."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from apps.assignment.models import Agent
from apps.assignment.realtime import agent_group, agent_state

# Close codes in the application range: the page stops retrying on these and falls back to polls.
CLOSE_NOT_SIGNED_IN = 4401
CLOSE_NOT_AGENT = 4403


@database_sync_to_async
def _agent_id(user) -> int | None:
    return Agent.objects.filter(user_id=user.pk).values_list("pk", flat=True).first()


class AgentConsumer(AsyncJsonWebsocketConsumer):
    agent_id: int | None = None

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_NOT_SIGNED_IN)
            return
        self.agent_id = await _agent_id(user)
        if self.agent_id is None:
            await self.close(code=CLOSE_NOT_AGENT)
            return
        # Join before reading the state: a change published in between is then pushed, not lost.
        await self.channel_layer.group_add(agent_group(self.agent_id), self.channel_name)
        await self.accept()
        state = await database_sync_to_async(agent_state)(self.agent_id)
        await self.send_json({"type": "state", "state": state})

    async def disconnect(self, code) -> None:
        if self.agent_id is not None:
            await self.channel_layer.group_discard(agent_group(self.agent_id), self.channel_name)

    async def receive_json(self, content, **kwargs) -> None:
        # Only keep-alives: every action is an HTTP call, so it has one code path and one answer.
        if isinstance(content, dict) and content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def state_push(self, event) -> None:
        await self.send_json({"type": "state", "state": event["state"]})

    async def screen_pop(self, event) -> None:
        await self.send_json({"type": "screen_pop", "case": event["case"]})
