"""The demo outside service for context tests: started in a thread on a free loopback port."""

import httpx
import pytest

from apps.cases.context import demo_service


@pytest.fixture(name="outside")
def outside_service(settings):
    """The demo outside systems, configured as this test's context URL, with short timeouts."""
    server = demo_service.start_in_thread()
    settings.CASEHUB_CONTEXT_URL = server.url
    settings.CASEHUB_CONTEXT_TYPE_URLS = {}
    settings.CASEHUB_CONTEXT_CONNECT_TIMEOUT_S = 0.5
    settings.CASEHUB_CONTEXT_READ_TIMEOUT_S = 0.5
    yield Outside(server)
    server.shutdown()
    server.server_close()


class Outside:
    def __init__(self, server: demo_service.DemoServer) -> None:
        self.server = server
        self.url = server.url

    def control(self, **body) -> dict:
        return httpx.post(f"{self.url}/_control", json=body, timeout=5).json()

    def fetches(self, type: str = "delivery") -> int:
        return self.server.state.snapshot()["fetches"].get(type, 0)

    def stop(self) -> None:
        """Really down: nothing listens on its port any more (connections are refused)."""
        self.server.shutdown()
        self.server.server_close()
