"""An agent's offers page in a real headless browser: sign in, see the case offered, accept it
and land on the case; then ask for the next case."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from apps.assignment import services
from apps.assignment.models import Offer, OfferState
from tests.factories import AgentFactory
from tests.factories.accounts import UserFactory
from tests.factories.cases import QueueFactory, make_case


@pytest.mark.django_db(transaction=True)
def test_agent_accepts_an_offer_then_pulls_the_next_case_in_a_real_browser(page, live_server):
    # Permissions granted directly: a transactional test flushes the role groups' permissions.
    user = UserFactory(username="offer-agent", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(
        codename__in=["view_offer", "view_case", "change_case", "view_agent"]))
    queue = QueueFactory(slug="offer-q", config__routing={"offer_timeout_seconds": 600})
    agent = AgentFactory(user=user, queues=[queue], capacity=5)
    offered = make_case(queue=queue, subject="Parcel never arrived")
    services.assignment_batch_run()
    waiting = make_case(queue=queue, subject="Second in line")

    page.goto(f"{live_server.url}/admin/login/?next=/admin/assignment/offer/")
    page.fill("#id_username", "offer-agent")
    page.fill("#id_password", "pass")
    page.click("input[type=submit]")
    row = page.wait_for_selector("#my-offers tr[data-offer]")
    assert "Parcel never arrived" in row.inner_text()

    row.query_selector("button:text-is('Accept')").click()
    page.wait_for_url(f"**/admin/cases/case/{offered.pk}/change/")
    assert "The case is yours." in page.inner_text(".messagelist")
    assert Offer.objects.get(case=offered).state == OfferState.ACCEPTED

    page.goto(f"{live_server.url}/admin/assignment/offer/")
    page.wait_for_selector("#my-offers:has-text('No offer is waiting for you.')")
    page.click("#next-case")
    page.wait_for_url(f"**/admin/cases/case/{waiting.pk}/change/")
    waiting.refresh_from_db()
    assert waiting.assigned_agent_id == agent.pk
