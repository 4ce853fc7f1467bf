"""Health tests start from empty lease state in Redis and with no open log streams."""

import pytest

from apps.health.streams import STREAMS


@pytest.fixture(autouse=True)
def _clean_health_state(redis_client):
    STREAMS.close_all()
    yield
    STREAMS.close_all()
