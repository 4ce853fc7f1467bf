"""Assignment tests: the counters live in Redis, flushed before each test."""

import pytest


@pytest.fixture(autouse=True)
def _counters(redis_client):
    from apps.assignment import counters

    counters._client.cache_clear()
    counters._scripts.cache_clear()
    yield redis_client
