"""The assignment board in a real headless browser: ops sign in, see queues and agents, and the
page follows changes in the database without a reload."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from apps.cases import services as case_services
from tests.factories import AgentFactory
from tests.factories.accounts import UserFactory
from tests.factories.cases import QueueFactory, make_case

BOARD = "/admin/assignment/agent/board/"


@pytest.mark.django_db(transaction=True)
def test_board_in_a_real_browser_refreshes_itself(page, live_server):
    # Permissions granted directly: a transactional test flushes the role groups' permissions.
    user = UserFactory(username="ops-board", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_agent",
                                                                       "see_assignment_board"]))
    queue = QueueFactory(slug="browser-q", name="Browser queue")
    agent = AgentFactory(display_name="Browser Agent", queues=[queue], capacity=5)
    first = make_case(queue=queue, subject="first")
    make_case(queue=queue, subject="second")

    page.goto(f"{live_server.url}/admin/login/?next={BOARD}")
    page.fill("#id_username", "ops-board")
    page.fill("#id_password", "pass")
    page.click("input[type=submit]")
    page.wait_for_selector("#assignment-board")
    row = 'tr[data-queue="browser-q"]'
    assert page.inner_text(f"{row} td[data-waiting]") == "2"
    agent_row = f'tr[data-agent="{agent.pk}"]'
    assert "Browser Agent" in page.inner_text(agent_row)
    assert page.inner_text(f"{agent_row} td[data-load]") == "0 / 5"

    # Assigned in the database; the board follows on its next refresh, without a reload.
    case_services.case_assign(case=first, agent=agent)
    page.wait_for_selector(f"{row} td[data-waiting]:text-is('1')")
    page.wait_for_selector(f"{agent_row} td[data-load]:text-is('1 / 5')")
    assert page.inner_text("#board-summary [data-waiting-total]") == "1"
