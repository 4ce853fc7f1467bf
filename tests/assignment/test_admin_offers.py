"""Offers and queue priorities in the admin: an agent answers their own offers and asks for their
next case; ops set the priority of each queue an agent works."""

import pytest

from apps.assignment import services
from apps.assignment.models import AgentQueue, Offer, OfferState
from apps.cases.models import Status
from tests.factories import AgentFactory, UserFactory
from tests.factories.cases import QueueFactory, make_case

pytestmark = pytest.mark.django_db
OFFERS = "/admin/assignment/offer/"


def test_an_agent_accepts_their_offer_from_the_offers_page(client):
    queue = QueueFactory()
    agent = AgentFactory(queues=[queue])
    case = make_case(queue=queue, subject="<b>bold</b> customer")
    services.assignment_batch_run()
    offer = Offer.objects.get(case=case)
    client.force_login(agent.user)

    page = client.get(OFFERS).content.decode()
    assert "Offered to you" in page and f'data-offer="{offer.pk}"' in page
    assert "&lt;b&gt;bold&lt;/b&gt; customer" in page and "<b>bold</b>" not in page
    assert 'id="next-case"' in page
    detail = client.get(f"{OFFERS}{offer.pk}/change/").content.decode()
    assert f'action="{OFFERS}{offer.pk}/accept/"' in detail

    assert client.get(f"{OFFERS}{offer.pk}/accept/").status_code == 405
    response = client.post(f"{OFFERS}{offer.pk}/accept/")
    assert response.status_code == 302 and response["Location"] == f"/admin/cases/case/{case.pk}/change/"
    case.refresh_from_db()
    assert case.status == Status.ASSIGNED
    assert Offer.objects.get(pk=offer.pk).state == OfferState.ACCEPTED


def test_another_agents_offer_has_no_buttons_and_cannot_be_answered(client):
    queue = QueueFactory()
    AgentFactory(queues=[queue])
    case = make_case(queue=queue)
    services.assignment_batch_run()
    offer = Offer.objects.get(case=case)
    client.force_login(AgentFactory().user)

    detail = client.get(f"{OFFERS}{offer.pk}/change/").content.decode()
    assert "/accept/" not in detail and "/decline/" not in detail
    response = client.post(f"{OFFERS}{offer.pk}/decline/", follow=True)
    assert "Offer not found." in response.content.decode()
    assert Offer.objects.get(pk=offer.pk).state == OfferState.PENDING


def test_next_case_button_assigns_the_best_waiting_case(client):
    queue = QueueFactory()
    agent = AgentFactory(queues=[queue])
    client.force_login(agent.user)
    response = client.post(f"{OFFERS}next-case/", follow=True)
    assert "Nothing waiting fits you right now." in response.content.decode()

    case = make_case(queue=queue)
    response = client.post(f"{OFFERS}next-case/")
    assert response.status_code == 302 and response["Location"] == f"/admin/cases/case/{case.pk}/change/"
    case.refresh_from_db()
    assert case.assigned_agent_id == agent.pk


def test_ops_set_queue_priorities_on_the_agent_page_and_in_the_list(client):
    first, second = QueueFactory(slug="prio-a"), QueueFactory(slug="prio-b")
    agent = AgentFactory(queues={first: 1})
    client.force_login(UserFactory(roles=["ops"]))
    link = AgentQueue.objects.get(agent=agent)
    response = client.post(f"/admin/assignment/agent/{agent.pk}/change/", {
        "user": agent.user_id, "display_name": agent.display_name, "skills": "", "capacity": 3,
        "presence": agent.presence,
        "queue_links-TOTAL_FORMS": 2, "queue_links-INITIAL_FORMS": 1,
        "queue_links-0-id": link.pk, "queue_links-0-agent": agent.pk, "queue_links-0-queue": first.pk,
        "queue_links-0-priority": 2,
        "queue_links-1-agent": agent.pk, "queue_links-1-queue": second.pk, "queue_links-1-priority": 1,
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    assert dict(AgentQueue.objects.filter(agent=agent).values_list("queue__slug", "priority")) == {
        "prio-a": 2, "prio-b": 1}
    # Out of range: refused by the database rule's form check, with the field named.
    response = client.post(f"/admin/assignment/agentqueue/{link.pk}/change/",
                           {"agent": agent.pk, "queue": first.pk, "priority": 12})
    assert response.status_code == 200 and "priority" in response.content.decode()
    assert AgentQueue.objects.get(pk=link.pk).priority == 2
