"""The agent workspace in a real headless browser against real uvicorn processes (websockets
need ASGI) and a real Celery worker running the engine: an offer pops up by push, by the
polling fallback with the socket off, in two tabs on two processes, and accepting in one tab
takes it from the other; an answered phone call opens its case in the tab."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission

from apps.assignment import services
from apps.assignment.models import Call, Offer, OfferState
from tests.factories import AgentFactory
from tests.factories.accounts import UserFactory
from tests.factories.cases import QueueFactory, make_case
from tests.utils.processes import BASE_DIR, celery_worker, stop_process, worker_env
from tests.utils.waiting import wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def servers(django_db_setup, django_db_blocker):
    """Two uvicorn processes on the test database, and one worker consuming the engine's queue."""
    with django_db_blocker.unblock():
        procs, urls = [], []
        try:
            for _ in range(2):
                port = _free_port()
                procs.append(subprocess.Popen(
                    [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
                     "--port", str(port), "--log-level", "warning"],
                    cwd=BASE_DIR, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    start_new_session=True))
                urls.append(f"http://127.0.0.1:{port}")
            for url in urls:
                wait_for(lambda url=url: _answers(f"{url}/healthz"), f"uvicorn at {url}", timeout=60)
            with celery_worker(["assignment"], concurrency=1):
                yield urls
        finally:
            for proc in procs:
                stop_process(proc)


@pytest.fixture
def agent(transactional_db):
    user = UserFactory(username="ws-agent", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_offer", "view_case", "change_case", "view_agent"]))
    queue = QueueFactory(slug="ws-q", config__routing={"offer_timeout_seconds": 600})
    agent = AgentFactory(user=user, queues=[queue], capacity=5, display_name="<i>Ws</i> Agent")
    services.counters_reconcile()
    return agent, queue


def _open_workspace(browser, base: str, query: str = ""):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(30_000)
    page.goto(f"{base}/admin/login/?next=/admin/assignment/workspace/{query}")
    page.fill("#id_username", "ws-agent")
    page.fill("#id_password", "pass")
    page.click("input[type=submit]")
    page.wait_for_selector("#workspace")
    return page


def _popup_ms(page, offer: Offer) -> float:
    shown = int(page.get_attribute(f'#offers .offer[data-offer="{offer.pk}"]', "data-shown-at"))
    return shown - offer.created_at.timestamp() * 1000


def test_an_engine_offer_pops_up_by_push_and_accepting_in_one_tab_updates_the_other(servers, agent, browser):
    agent_row, queue = agent
    first = _open_workspace(browser, servers[0])
    # The second tab is served by the other process: the push must cross processes.
    second = _open_workspace(browser, servers[1])
    for page in (first, second):
        page.wait_for_selector("#workspace[data-transport=live]")
        assert "<i>Ws</i> Agent" in page.inner_text("#workspace-side h2")  # escaped, shown as text

    case = make_case(queue=queue, subject="<b>Parcel</b> never arrived")  # the worker's batch offers it
    offer = wait_for(lambda: Offer.objects.filter(case=case, state=OfferState.PENDING).first(),
                     "the engine's offer", timeout=60)
    for page in (first, second):
        row = page.wait_for_selector(f'#offers .offer[data-offer="{offer.pk}"]')
        assert "<b>Parcel</b> never arrived" in row.inner_text()
        assert page.query_selector("#offers b") is None
    print(f"\npush: commit to popup {_popup_ms(first, offer):.0f} ms (tab 1), "
          f"{_popup_ms(second, offer):.0f} ms (tab 2, other process)")

    first.click(f'#offers .offer[data-offer="{offer.pk}"] .offer-accept')
    first.wait_for_selector(f'#cases a[data-case="{case.pk}"]')
    assert first.get_attribute("#case-pane", "data-case") == str(case.pk)
    second.wait_for_selector(f'#cases a[data-case="{case.pk}"]')
    second.wait_for_selector("#popup", state="hidden")
    assert second.query_selector("#offers .offer") is None
    offer.refresh_from_db()
    assert offer.state == OfferState.ACCEPTED
    first.context.close()
    second.context.close()


def test_with_the_socket_off_the_polling_fallback_shows_the_offer(servers, agent, browser):
    _agent, queue = agent
    page = _open_workspace(browser, servers[0], "?transport=poll")
    page.wait_for_selector("#workspace[data-transport=polling]")
    case = make_case(queue=queue, subject="Polled case")
    offer = wait_for(lambda: Offer.objects.filter(case=case, state=OfferState.PENDING).first(),
                     "the engine's offer", timeout=60)
    page.wait_for_selector(f'#offers .offer[data-offer="{offer.pk}"]')
    print(f"\npoll: commit to popup {_popup_ms(page, offer):.0f} ms (interval 2000 ms)")
    page.click(f'#offers .offer[data-offer="{offer.pk}"] .offer-decline')
    page.wait_for_selector("#popup", state="hidden")
    assert Offer.objects.get(pk=offer.pk).state == OfferState.DECLINED
    page.context.close()


@pytest.mark.parametrize(("query", "transport"), [("", "live"), ("?transport=poll", "polling")])
def test_an_answered_call_opens_its_case_in_the_agents_tab(servers, agent, browser, query, transport):
    agent_row, _queue = agent
    QueueFactory(slug=settings.CASEHUB_PHONE_QUEUE)
    page = _open_workspace(browser, servers[0], query)
    page.wait_for_selector(f"#workspace[data-transport={transport}]")
    # The softphone reaches the other process: the pop crosses processes as offers do.
    request = urllib.request.Request(
        f"{servers[1]}/api/v1/calls/", method="POST",
        data=json.dumps({"call_id": "browser-call", "event": "answered", "caller": "+49 30 5550100",
                         "agent": "ws-agent"}).encode(),
        headers={"Content-Type": "application/json",
                 "Authorization": f"Bearer {settings.CASEHUB_SOFTPHONE_SECRET}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        case_id = json.load(response)["case"]
    page.wait_for_selector("#workspace[data-screen-pop=browser-call]")
    assert page.get_attribute("#case-pane", "data-case") == case_id
    assert "+4930" in page.inner_text("#workspace-message")
    assert Call.objects.get(call_id="browser-call").agent_id == agent_row.pk
    page.context.close()
