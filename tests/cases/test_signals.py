"""POST /api/v1/signals/: targeting, dedup (also under concurrent retries), experiment split, auth."""


import pytest

from apps.cases import services, targeting
from apps.cases.models import Case, CaseEvent, Channel, SignalOutcome
from tests.factories.accounts import UserFactory
from tests.factories.cases import QueueFactory
from tests.utils.concurrency import run_at_once

URL = "/api/v1/signals/"
LATE_SCHEMA = {"type": "object", "properties": {"minutes_late": {"type": "integer"},
                                                "carrier": {"type": "string"}}}


def late_queue(experiment=None):
    rules = {"signal_types": ["late_delivery"], "priority": 3,
             "conditions": [{"path": "minutes_late", "op": "gte", "value": 30}]}
    if experiment:
        rules["experiment"] = experiment
    return QueueFactory(slug="proactive_late_delivery", config__fields_schema=LATE_SCHEMA,
                        config__targeting_rules=rules)


@pytest.fixture
def ops_client(api_client, db):
    api_client.force_authenticate(UserFactory(username="ops1", roles=["ops"]))
    return api_client


def signal(delivery="d-1", minutes=45, **extra):
    return {"signal_type": "late_delivery", "delivery_id": delivery, "merchant_id": "m-1001",
            "payload": {"minutes_late": minutes, "carrier": "bike", "eta": "soon"}, **extra}


@pytest.mark.django_db
def test_signal_creates_one_proactive_case_and_retries_are_deduplicated(ops_client):
    queue = late_queue()
    first = ops_client.post(URL, signal(), format="json")
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["targeted"] and body["created"] and body["group"] == "none"
    case = Case.objects.get(pk=body["case_id"])
    assert case.queue == queue and case.channel == Channel.PROACTIVE and case.priority == 3
    assert case.merchant_ref == "m-1001" and case.delivery_ref == "d-1"
    assert case.fields == {"minutes_late": 45, "carrier": "bike"}  # only fields the schema declares
    assert CaseEvent.objects.filter(case=case, kind="created").count() == 1

    retry = ops_client.post(URL, signal(), format="json")
    assert retry.status_code == 200 and retry.json()["case_id"] == body["case_id"]
    assert not retry.json()["created"]
    assert Case.objects.count() == 1 and SignalOutcome.objects.get().received_count == 2


@pytest.mark.django_db
def test_signal_not_matching_targeting_creates_nothing(ops_client):
    late_queue()
    response = ops_client.post(URL, signal(minutes=5), format="json")
    assert response.status_code == 200 and response.json()["targeted"] is False
    response = ops_client.post(URL, {**signal(), "signal_type": "missing_items"}, format="json")
    assert response.json()["targeted"] is False
    assert not Case.objects.exists() and not SignalOutcome.objects.exists()


@pytest.mark.django_db
def test_signal_validation_errors_are_field_level(ops_client):
    late_queue()
    response = ops_client.post(URL, {"signal_type": "late delivery!", "payload": []}, format="json")
    assert response.status_code == 400
    assert set(response.json()) >= {"signal_type", "delivery_id", "payload"}


@pytest.mark.django_db
def test_signal_needs_permission(api_client):
    late_queue()
    assert api_client.post(URL, signal(), format="json").status_code in (401, 403)
    api_client.force_authenticate(UserFactory(username="agent-x", roles=["agent"]))
    assert api_client.post(URL, signal(), format="json").status_code == 403
    assert not SignalOutcome.objects.exists()


def test_experiment_split_is_deterministic_and_balanced():
    rules = {"experiment": {"name": "late-2026", "treatment_percent": 50}}
    groups = [targeting.experiment_group(rules, f"d-{n}")[1] for n in range(2000)]
    assert groups == [targeting.experiment_group(rules, f"d-{n}")[1] for n in range(2000)]
    assert 900 < groups.count("treatment") < 1100
    # Pinned literals: SHA-256 of "experiment:delivery", so every process and machine (and a
    # later analysis) puts a delivery in the same group; Python's salted hash() would not.
    assert [targeting.experiment_bucket("late-2026", d) for d in ("d-1", "d-2")] == [698, 5452]
    assert targeting.experiment_bucket("other", "d-1") == 6212
    assert groups[:6] == ["treatment", "treatment", "control", "treatment", "control", "treatment"]
    other = [targeting.experiment_group({"experiment": {"name": "other"}}, f"d-{n}")[1] for n in range(2000)]
    assert other != groups  # experiments split independently
    assert targeting.experiment_group({}, "d-1") == ("", "none")


@pytest.mark.django_db
def test_control_group_is_recorded_without_a_case(ops_client):
    late_queue(experiment={"name": "late-2026", "treatment_percent": 50})
    deliveries = [f"d-{n}" for n in range(40)]
    for delivery in deliveries:
        assert ops_client.post(URL, signal(delivery), format="json").status_code == 201
    outcomes = {o.delivery_ref: o for o in SignalOutcome.objects.all()}
    assert len(outcomes) == 40
    for delivery, outcome in outcomes.items():
        expected = targeting.experiment_group({"experiment": {"name": "late-2026"}}, delivery)[1]
        assert outcome.group == expected and outcome.experiment == "late-2026"
        assert (outcome.case_id is None) == (expected == "control")
    assert Case.objects.count() == sum(1 for o in outcomes.values() if o.group == "treatment") > 0


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_create_exactly_one_case():
    late_queue()
    user = UserFactory(username="ops2", roles=["ops"])
    threads_n = 8

    def send():
        result = services.signal_ingest(signal_type="late_delivery", delivery_ref="d-race",
                                        payload={"minutes_late": 60}, actor=user)
        return result.created, result.outcome.case_id

    results = run_at_once(send, threads_n)
    assert sum(created for created, _ in results) == 1
    assert len({case_id for _, case_id in results}) == 1
    assert Case.objects.filter(delivery_ref="d-race").count() == 1
    assert SignalOutcome.objects.get(delivery_ref="d-race").received_count == threads_n
    assert CaseEvent.objects.filter(kind="created").count() == 1


@pytest.mark.django_db
def test_experiment_impact_compares_follow_up_contacts(ops_client):
    from apps.cases import metrics
    from apps.cases.selectors import experiment_impact
    from tests.factories.cases import make_case

    queue = late_queue(experiment={"name": "late-2026", "treatment_percent": 50})
    for n in range(30):
        ops_client.post(URL, signal(f"d-{n}"), format="json")
    outcomes = list(SignalOutcome.objects.order_by("delivery_ref"))
    control = [o for o in outcomes if o.group == "control"]
    treatment = [o for o in outcomes if o.group == "treatment"]
    # Customers of two control deliveries and one treatment delivery contact support afterwards.
    for outcome in control[:2] + treatment[:1]:
        make_case(queue=queue, delivery_ref=outcome.delivery_ref, source="api", channel="chat")
    rows = {r["group"]: r for r in experiment_impact()}
    assert rows["control"]["deliveries"] == len(control) and rows["control"]["followups"] == 2
    assert rows["treatment"]["deliveries"] == len(treatment) and rows["treatment"]["followups"] == 1
    families = {f.name: f for f in metrics.collect()}
    samples = {s.labels["group"]: s.value for s in families["casehub_signal_experiment_followups"].samples}
    assert samples == {"control": 2, "treatment": 1}


@pytest.mark.django_db
def test_payload_that_breaks_the_queue_schema_is_refused_field_by_field(ops_client):
    QueueFactory(slug="proactive_missing", config__fields_schema={
        "type": "object", "required": ["items"],
        "properties": {"items": {"type": "integer", "minimum": 1}, "carrier": {"type": "string"}}},
        config__targeting_rules={"signal_types": ["missing_items"]})
    bad = {"signal_type": "missing_items", "delivery_id": "d-9", "payload": {"items": 0, "carrier": 7}}
    response = ops_client.post(URL, bad, format="json")
    assert response.status_code == 400
    body = response.json()
    assert "proactive_missing" in body["detail"]
    assert set(body["errors"]) == {"payload.items", "payload.carrier"}
    assert "minimum" in body["errors"]["payload.items"][0]
    missing = ops_client.post(URL, {**bad, "payload": {"carrier": "bike"}}, format="json")
    assert missing.json()["errors"] == {"payload.items": ["This field is required."]}
    assert not SignalOutcome.objects.exists() and not Case.objects.exists()
    fixed = ops_client.post(URL, {**bad, "payload": {"items": 2, "carrier": "bike"}}, format="json")
    assert fixed.status_code == 201 and Case.objects.get().fields == {"items": 2, "carrier": "bike"}


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_through_the_api_get_one_201_and_the_same_case():
    """The sender retries a timed-out request while the first is still running: every request
    runs on its own thread and database connection, through the view, at the same moment."""
    from django.contrib.auth.models import Permission
    from rest_framework.test import APIClient

    late_queue()
    sender = UserFactory(username="signal-sender")
    sender.user_permissions.add(Permission.objects.get(codename="ingest_signal"))
    threads_n = 10

    def post():
        client = APIClient()
        client.force_authenticate(sender)
        response = client.post(URL, signal("d-api-race", minutes=90), format="json")
        return response.status_code, response.json()

    responses = run_at_once(post, threads_n)
    assert sorted(code for code, _ in responses) == [200] * (threads_n - 1) + [201]
    assert len({body["case_id"] for _, body in responses}) == 1
    assert [body["created"] for code, body in responses if code == 201] == [True]
    case = Case.objects.get(delivery_ref="d-api-race")
    assert str(case.pk) == responses[0][1]["case_id"]
    assert SignalOutcome.objects.get(delivery_ref="d-api-race").received_count == threads_n
    assert CaseEvent.objects.filter(case=case).count() == 1
