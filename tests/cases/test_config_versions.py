"""Queue config versions: drafts, publishing (ops only, rebase when stale), rollback as a new
version, diffs, the checks before publish, the dry run, and renaming a field with its values."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.cases import services
from apps.cases.models import Case, QueueConfig, Status
from apps.core.errors import ApplicationError
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import REFUND_SCHEMA, STANDARD_TRANSITIONS, QueueFactory, make_case

pytestmark = pytest.mark.django_db


@pytest.fixture
def refunds():
    return QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)


@pytest.fixture
def editor():
    return UserFactory(username="editor", roles=["queue-config-editor"])


@pytest.fixture
def ops():
    return UserFactory(username="ops", roles=["ops"])


def active_document(queue) -> dict:
    return services.queue_config_document(QueueConfig.objects.get(queue=queue, is_active=True))


def with_reason_required(document: dict) -> dict:
    schema = {**document["fields_schema"], "required": ["order_id", "reason"]}
    return {**document, "fields_schema": schema}


def test_drafts_are_saved_again_in_place_and_published_by_ops_only(refunds, editor, ops):
    v1 = QueueConfig.objects.get(queue=refunds)
    document = active_document(refunds)
    draft = services.queue_config_draft_save(queue=refunds, document=document, user=editor,
                                             comment="first try")
    assert (draft.version, draft.state, draft.based_on, draft.is_active) == (2, "draft", v1, False)
    document["sla"] = {"first_response_minutes": 30}
    again = services.queue_config_draft_save(queue=refunds, document=document, user=editor, draft=draft)
    assert again.pk == draft.pk and QueueConfig.objects.get(pk=draft.pk).sla == {"first_response_minutes": 30}
    with pytest.raises(ApplicationError) as bad:
        services.queue_config_draft_save(queue=refunds, document={**document, "sla": {"x": 1}}, user=editor)
    assert "sla" in bad.value.errors
    assert not editor.has_perm("cases.publish_queueconfig") and ops.has_perm("cases.publish_queueconfig")

    published = services.queue_config_publish_draft(draft=draft, user=ops, comment="faster")
    assert (published.pk, published.state, published.is_active, published.published_by) == (
        draft.pk, "published", True, ops)
    assert published.published_at is not None and not QueueConfig.objects.get(pk=v1.pk).is_active
    with pytest.raises(ApplicationError):  # published versions never change
        services.queue_config_draft_save(queue=refunds, document=document, user=editor, draft=published)


def test_a_stale_draft_asks_for_a_rebase(refunds, editor, ops):
    document = active_document(refunds)
    stale = services.queue_config_draft_save(queue=refunds, document=document, user=editor)
    newer = services.queue_config_draft_save(queue=refunds, document=document, user=editor)
    services.queue_config_publish_draft(draft=newer, user=ops)
    with pytest.raises(ApplicationError) as refused:
        services.queue_config_publish_draft(draft=stale, user=ops)
    assert refused.value.code == "rebase_needed" and "Version 3 is active" in refused.value.message
    assert QueueConfig.objects.get(queue=refunds, is_active=True).pk == newer.pk
    rebased = services.queue_config_publish_draft(draft=stale, user=ops, rebase=True)
    assert rebased.is_active and rebased.based_on_id == newer.pk


def test_rollback_publishes_the_old_content_as_a_new_version_and_restores_behaviour(refunds, ops):
    v1 = QueueConfig.objects.get(queue=refunds)
    services.queue_config_publish(queue=refunds, fields_schema={"type": "object"},
                                  transitions={"new": ["resolved"], "resolved": []})
    case = make_case(queue=refunds, fields={"order_id": "A-1"})
    assert case.config_version == 2
    make_case(queue=refunds, fields={"anything": 1})  # version 2 takes any fields
    with pytest.raises(ApplicationError):  # nor a move v1 allows
        services.case_transition(case=case, to_status=Status.IN_PROGRESS)
    with pytest.raises(ApplicationError) as lacking:  # that case lacks v1's required order_id
        services.queue_config_rollback(config=v1, user=ops)
    assert "1 open cases" in lacking.value.errors["fields_schema.properties.order_id"][0]
    Case.objects.filter(fields__has_key="anything").update(status=Status.CLOSED)
    rolled = services.queue_config_rollback(config=v1, user=ops)
    assert rolled.version == 3 and rolled.is_active and rolled.pk != v1.pk
    assert not QueueConfig.objects.get(pk=v1.pk).is_active  # history is not rewritten
    assert services.queue_config_document(rolled) == services.queue_config_document(v1)
    services.case_transition(case=case, to_status=Status.IN_PROGRESS)
    with pytest.raises(ApplicationError) as missing:
        make_case(queue=refunds)
    assert "fields.order_id" in missing.value.errors


def test_each_case_records_the_version_it_was_last_validated_against(refunds, ops):
    case = make_case(queue=refunds, fields={"order_id": "A-100"})
    assert Case.objects.get(pk=case.pk).config_version == 1
    services.queue_config_rollback(config=QueueConfig.objects.get(queue=refunds), user=ops)
    services.case_update(case=case, fields={"vip": True})
    assert Case.objects.get(pk=case.pk).config_version == 2


def test_the_diff_names_each_changed_field(refunds):
    before = active_document(refunds)
    after = with_reason_required(before)
    after["fields_schema"]["properties"] = {**before["fields_schema"]["properties"],
                                            "reason": {"type": "string", "enum": ["late", "other"]},
                                            "note": {"type": "string"}}
    del after["fields_schema"]["properties"]["vip"]
    after["sla"] = {}
    changes = {c.path: c for c in services.queue_config_diff(before, after)}
    assert changes["fields_schema.properties.reason.enum"].kind == "changed"
    assert changes["fields_schema.properties.reason.enum"].after == ["late", "other"]
    assert changes["fields_schema.properties.vip"].kind == "removed"
    assert changes["fields_schema.properties.note"].kind == "added"
    assert changes["fields_schema.required"].before == ["order_id"]
    assert changes["sla.first_response_minutes"].kind == "removed"
    assert services.queue_config_diff(before, before) == []


def test_checks_name_each_problem_by_path(refunds):
    AgentFactory(skills=["refunds"], queues=[refunds], capacity=3)
    make_case(queue=refunds, fields={"order_id": "A-1"})
    make_case(queue=refunds, fields={"order_id": "A-2", "reason": "late"})
    done = make_case(queue=refunds, fields={"order_id": "A-3"})
    services.case_transition(case=done, to_status=Status.RESOLVED)
    document = with_reason_required(active_document(refunds))
    document["transitions"] = {**STANDARD_TRANSITIONS, "pending_customer": ["in_progress"],
                               "in_progress": ["pending_customer"], "closed": [], "reopened": ["resolved"]}
    document["transitions"]["new"] = ["in_progress", "closed"]
    document["routing"] = {"required_skills": ["refunds", "klingon"], "channel_weights": {"phone": 5}}
    report = services.queue_config_check(queue=refunds, document=document)
    assert report.warnings["routing.required_skills"] == [
        "No active agent has the skill 'klingon': cases that need it wait until one does."]
    # The resolved case is not open; the one with a reason has it.
    assert "1 open cases" in report.errors["fields_schema.properties.reason"][0]
    assert "cannot be reached" in report.errors["transitions.reopened"][0]
    assert "can never reach" in report.errors["transitions.in_progress"][0]
    assert "can never reach" in report.errors["transitions.pending_customer"][0]
    assert "no agent of this queue has more than 3" in report.errors["routing.channel_weights.phone"][0]
    assert "transitions.new" not in report.errors
    draft = services.queue_config_draft_save(queue=refunds, document=document, user=None)  # drafts may
    with pytest.raises(ApplicationError) as refused:
        services.queue_config_publish_draft(draft=draft, user=None)
    assert refused.value.errors == report.errors
    slow = {**document, "routing": {"offer_timeout_seconds": 1}}
    bad = services.queue_config_check(queue=refunds, document=slow)
    assert list(bad.errors) == ["routing.offer_timeout_seconds"]


def test_the_dry_run_counts_failing_open_cases_with_examples_in_one_query(refunds):
    failing = [make_case(queue=refunds, fields={"order_id": f"A-{i}"}) for i in range(3)]
    make_case(queue=refunds, fields={"order_id": "B-1", "reason": "late"})
    closed = make_case(queue=refunds, fields={"order_id": "C-1"})
    services.case_transition(case=closed, to_status=Status.CLOSED)
    document = with_reason_required(active_document(refunds))
    with CaptureQueriesContext(connection) as queries:
        result = services.queue_config_dry_run(queue=refunds, document=document, examples=2)
    assert (result.checked, result.failing, len(result.examples)) == (4, 3, 2)
    assert len([q for q in queries.captured_queries if "cases_case" in q["sql"]]) == 1
    assert result.examples[0]["errors"] == {"fields.reason": ["This field is required."]}
    assert {e["case_id"] for e in result.examples} <= {str(c.pk) for c in failing}
    assert QueueConfig.objects.filter(queue=refunds).count() == 1  # nothing written


def test_renaming_a_field_migrates_every_case_in_sets(refunds, ops, monkeypatch):
    from apps.cases.services import config_versions

    monkeypatch.setattr(config_versions, "RENAME_BATCH", 2)
    open_cases = [make_case(queue=refunds, fields={"order_id": f"A-{i}", "reason": "late"}) for i in range(3)]
    closed = make_case(queue=refunds, fields={"order_id": "C-1", "reason": "other"})
    services.case_transition(case=closed, to_status=Status.CLOSED)
    untouched = make_case(queue=refunds, fields={"order_id": "N-1"})
    other_queue = make_case(queue=QueueFactory(slug="other"), fields={"reason": "x"})
    with CaptureQueriesContext(connection) as queries:
        config = services.queue_config_field_rename(queue=refunds, old="reason", new="cause", user=ops)
    assert len([q for q in queries.captured_queries if q["sql"].startswith("WITH batch")]) == 3  # 2+2+0
    assert config.is_active and config.version == 2 and config.published_by == ops
    assert set(config.fields_schema["properties"]) == {"order_id", "order_total", "cause", "items_missing",
                                                       "vip", "delivered_on"}
    fields = dict(Case.objects.values_list("id", "fields"))
    assert [fields[c.pk] for c in open_cases] == [{"order_id": f"A-{i}", "cause": "late"} for i in range(3)]
    assert fields[closed.pk] == {"order_id": "C-1", "cause": "other"}
    assert fields[untouched.pk] == {"order_id": "N-1"} and fields[other_queue.pk] == {"reason": "x"}
    with pytest.raises(ApplicationError) as exists:
        services.queue_config_field_rename(queue=refunds, old="cause", new="order_id", user=ops)
    assert "new" in exists.value.errors
    assert QueueConfig.objects.filter(queue=refunds).count() == 2
