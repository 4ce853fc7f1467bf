"""Routing config: pure rules, and the schema keys with their field-level messages."""

import pytest

from apps.assignment.routing import MOST_SPARE_CAPACITY, ROUND_ROBIN, Candidate, Pools, Routing
from apps.cases.services import queue_config_errors

TRANSITIONS = {"new": ["resolved"]}


def test_skills_relax_after_wait_and_old_skills_key_is_required():
    rule = Routing.from_config({"skills": ["en"], "optional_skills": ["vip", "en"],
                                "relax_after_seconds": 30})
    assert rule.skills_needed(waited_seconds=29) == {"en", "vip"}
    assert rule.skills_needed(waited_seconds=30) == {"en"}
    assert Routing.from_config({"optional_skills": ["vip"]}).skills_needed(waited_seconds=10**6) == {"vip"}


def test_weights_and_strategy_defaults():
    rule = Routing.from_config({"channel_weights": {"chat": 2}, "strategy": ROUND_ROBIN})
    assert (rule.weight("chat"), rule.weight("email"), rule.strategy) == (2, 1, ROUND_ROBIN)
    assert Routing.from_config(None).strategy == MOST_SPARE_CAPACITY


def test_valid_routing_passes():
    routing = {"required_skills": ["en"], "optional_skills": ["vip"], "relax_after_seconds": 60,
               "channel_weights": {"chat": 2, "email": 1}, "strategy": "round_robin"}
    assert queue_config_errors(fields_schema={}, transitions=TRANSITIONS, routing=routing) == {}


@pytest.mark.parametrize(("routing", "message"), [
    ({"strategy": "random"}, "'strategy' must be one of most_spare_capacity, round_robin."),
    ({"relax_after_seconds": -1}, "'relax_after_seconds' must be an integer of 0 or more."),
    ({"relax_after_seconds": "soon"}, "'relax_after_seconds' must be an integer of 0 or more."),
    ({"channel_weights": {"fax": 1}}, "'channel_weights' must map channels"),
    ({"channel_weights": {"chat": 0}}, "'channel_weights' must map channels"),
    ({"channel_weights": {"chat": 1.5}}, "'channel_weights' must map channels"),
    ({"optional_skills": ["a", "a"]}, "'optional_skills' must be a list of distinct skill names"),
    ({"required_skills": "en"}, "'required_skills' must be a list of distinct skill names"),
])
def test_bad_routing_gets_a_field_level_message(routing, message):
    errors = queue_config_errors(fields_schema={}, transitions=TRANSITIONS, routing=routing)
    assert list(errors) == ["routing"] and any(m.startswith(message) for m in errors["routing"]), errors


def test_an_agent_further_down_with_a_lighter_own_weight_still_gets_the_case():
    def agent(agent_id, **kwargs):
        return Candidate(agent_id=agent_id, skills=frozenset(), capacity=3, load=2, idle_since=agent_id,
                         queue_priority={7: 1}, **kwargs)

    # Ranked first (idle longest) but full for the queue's weight of 2; the next one's own weight
    # for chat is 1. Ranked by spare units alone, the search would stop at the first.
    pools = Pools([agent(1), agent(2, channel_weights={"chat": 1})], removed_before={}, now=100.0)
    choice = pools.choose(queue_id=7, needed=frozenset(), weight=2, strategy=MOST_SPARE_CAPACITY,
                          max_priority=1, channel="chat")
    assert choice.winner.agent_id == 2 and choice.weight == 1 and choice.removed["full"] == 1
    email = pools.choose(queue_id=7, needed=frozenset(), weight=2, strategy=MOST_SPARE_CAPACITY,
                         max_priority=1, channel="email")
    assert email.winner is None and email.removed["full"] == 2
