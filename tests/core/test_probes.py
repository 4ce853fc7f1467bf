"""/readyz against the real database, Redis and a live Celery worker; the websocket route."""

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest
from channels.testing.websocket import WebsocketCommunicator

from config import embedded

# The probe returns as soon as one worker answers: a generous limit costs nothing when one runs,
# and a busy machine cannot turn a slow answer into a failure.
WORKER_ANSWERS_WITHIN_S = 30


@pytest.mark.slow
def test_readyz_is_200_with_a_worker_running(client, celery_worker, settings):
    settings.READYZ_WORKER_TIMEOUT = WORKER_ANSWERS_WITHIN_S
    response = client.get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["failed"] == []
    assert celery_worker in body["checks"]["celery"]["detail"]


@pytest.mark.django_db
def test_readyz_is_503_naming_the_missing_worker(client, settings):
    settings.READYZ_WORKER_TIMEOUT = 0.3
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failed"] == ["celery"]


@pytest.mark.slow
def test_readyz_is_503_naming_redis_when_redis_stops(client, celery_worker, settings, tmp_path):
    # A Redis of this test's own, so stopping it does not disturb the rest of the run.
    state, _ = embedded._redis_start(tmp_path)
    settings.READYZ_WORKER_TIMEOUT = WORKER_ANSWERS_WITHIN_S
    settings.REDIS_URL = f"redis://127.0.0.1:{state['port']}/0"
    assert client.get("/readyz").status_code == 200

    embedded._redis_stop(tmp_path)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["redis"]
    assert body["checks"]["redis"]["ok"] is False and body["checks"]["database"]["ok"] is True


def test_websocket_route_goes_through_channels():
    # A thread of its own: the session's Playwright browser keeps an event loop running in
    # the main thread once a browser test has run, and asyncio.run refuses to nest in it.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, _websocket_roundtrip()).result(timeout=30)


async def _websocket_roundtrip():
    from config.asgi import application

    communicator = WebsocketCommunicator(application, "/ws/ping/", headers=[(b"origin", b"http://127.0.0.1:8000"),
                                                                          (b"host", b"127.0.0.1:8000")])
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"hello": "casehub"})
    assert await communicator.receive_json_from() == {"type": "pong", "echo": {"hello": "casehub"}}
    await communicator.disconnect()
