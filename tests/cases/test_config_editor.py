"""The queue config editor in admin: each form section builds its part of the document, invalid
input gives field errors (never a 500), check and dry run, drafts and who publishes, rebase,
history (pinned query count), diffs, rollback, field rename, and escaping of what editors type."""

import pytest
from django import forms

from apps.cases import services
from apps.cases.config_forms import Sections
from apps.cases.models import Case, QueueConfig
from tests.factories.accounts import AgentFactory, UserFactory
from tests.factories.cases import REFUND_SCHEMA, QueueFactory, make_case

pytestmark = pytest.mark.django_db
XSS = "<script>alert(1)</script>"


@pytest.fixture
def refunds():
    return QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)


@pytest.fixture
def editor(client):
    client.force_login(UserFactory(username="editor-1", roles=["queue-config-editor"]))
    return client


@pytest.fixture
def ops(client):
    client.force_login(UserFactory(username="ops-1", roles=["ops"]))
    return client


def url(queue, page="editor"):
    return f"/admin/cases/queueconfig/queue/{queue.pk}/{page}/"


def form_data(document: dict, **changes) -> dict:
    """What the editor page posts for `document` unchanged (as a browser would), plus `changes`."""
    data = {"mode": "form", "hours": "24", "comment": ""}
    for part in Sections.from_document(document).parts():
        members = [part.management_form, *part.forms] if isinstance(part, forms.BaseFormSet) else [part]
        for form in members:
            for bound in form:
                value = bound.value()
                if isinstance(bound.field, forms.BooleanField):
                    if value:
                        data[bound.html_name] = "on"
                elif value is not None:
                    data[bound.html_name] = str(value)
    data.update(changes)
    return {key: value for key, value in data.items() if value is not None}


def errors_of(response) -> dict:
    """Every error the editor page shows, for assertion messages."""
    context = response.context
    found = {"meta": context["meta"].errors, "other": context["other_errors"]}
    for part in context["sections"].parts():
        if isinstance(part, forms.BaseFormSet):
            found[part.prefix] = [form.errors for form in part.forms] + [part.non_form_errors()]
        else:
            found[part.prefix] = part.errors
    return found


def row(document: dict, name: str) -> int:
    """The formset row of a field (the database keeps a JSON object's keys in its own order)."""
    return list(document["fields_schema"]["properties"]).index(name)


def active_document(queue) -> dict:
    return services.queue_config_document(queue.configs.get(is_active=True))


def test_each_section_builds_its_part_of_the_document(editor, refunds):
    page = editor.get(url(refunds))
    assert page.status_code == 200 and b"order_total" in page.content
    base = active_document(refunds)
    n = len(REFUND_SCHEMA["properties"])  # the blank row after the existing fields
    response = editor.post(url(refunds), form_data(base, **{
        "action": "save", "comment": "more fields",
        f"fields-{n}-name": "channel_reason", f"fields-{n}-type": "string", f"fields-{n}-required": "on",
        f"fields-{n}-choices": "late\n damaged \n\nlate", f"fields-{n}-description": "Why they called",
        f"fields-{n}-max_length": "20",
        f"fields-{row(base, 'order_total')}-maximum": "5000.5",
        f"fields-{row(base, 'order_total')}-minimum": "",
        f"fields-{row(base, 'vip')}-DELETE": "on",
        "tr-initial_status": "new", "tr-t_new__closed": None, "tr-t_closed__reopened": "on",
        "sla-first_response_minutes": "30", "sla-resolution_minutes": "600", "sla-reopen_window_days": "3",
        "ro-strategy": "round_robin", "ro-offers": "off", "ro-offer_timeout_seconds": "45",
        "ro-required_skills": "refunds, english", "ro-optional_skills": "vip\n",
        "ro-relax_after_seconds": "90",
        "ro-cw_chat": "2", "ro-cw_phone": "3", "ro-pw_4": "10", "ro-pw_1": "0.5",
        "tg-signal_types": "late_delivery", "tg-priority": "3", "tg-experiment_name": "late-2026",
        "tg-treatment_percent": "50", "cond-0-path": "minutes_late", "cond-0-op": "gte", "cond-0-value": "30",
        "cond-TOTAL_FORMS": "2", "cond-1-path": "order.country", "cond-1-op": "in",
        "cond-1-value": '["NL", "BE"]',
    }))
    assert response.status_code == 302, errors_of(response)
    draft = QueueConfig.objects.get(queue=refunds, state="draft")
    assert response["Location"].endswith(f"?draft={draft.pk}")
    assert (draft.comment, draft.is_active, draft.based_on.version) == ("more fields", False, 1)
    props = draft.fields_schema["properties"]
    assert set(props) == {"order_id", "order_total", "reason", "items_missing", "delivered_on",
                          "channel_reason"}
    assert props["channel_reason"] == {"type": "string", "enum": ["late", "damaged"], "maxLength": 20,
                                       "description": "Why they called"}
    assert props["order_total"] == {"type": "number", "maximum": 5000.5}
    assert props["delivered_on"] == {"type": "string", "format": "date"}  # keys the form does not show stay
    assert draft.fields_schema["required"] == ["order_id", "channel_reason"]
    assert draft.fields_schema["additionalProperties"] is False
    assert "closed" not in draft.transitions["new"] and "reopened" in draft.transitions["closed"]
    assert draft.sla == {"first_response_minutes": 30, "resolution_minutes": 600, "reopen_window_days": 3}
    assert draft.routing == {"strategy": "round_robin", "offers": False, "offer_timeout_seconds": 45,
                             "relax_after_seconds": 90, "required_skills": ["refunds", "english"],
                             "optional_skills": ["vip"], "channel_weights": {"chat": 2, "phone": 3},
                             "priority_weights": {"1": 0.5, "4": 10}}
    assert draft.targeting == {"signal_types": ["late_delivery"], "priority": 3,
                               "experiment": {"name": "late-2026", "treatment_percent": 50},
                               "conditions": [{"path": "minutes_late", "op": "gte", "value": 30},
                                              {"path": "order.country", "op": "in", "value": ["NL", "BE"]}]}
    # The draft reopens in the editor, and an unchanged round trip through the forms changes nothing.
    document = services.queue_config_document(draft)
    again = editor.post(url(refunds), form_data(document, action="save", draft=str(draft.pk)))
    assert again.status_code == 302
    draft.refresh_from_db()
    assert services.queue_config_diff(document, services.queue_config_document(draft)) == []
    assert b"late-2026" in editor.get(f"{url(refunds)}?draft={draft.pk}").content


def test_json_mode_edits_the_same_document_and_wins_alone(editor, refunds):
    base = active_document(refunds)
    switched = editor.post(url(refunds), form_data(base, action="to_json",
                                                   **{"sla-resolution_minutes": "99"}))
    assert switched.status_code == 200 and switched.context["mode"] == "json"
    raw = switched.context["meta"]["raw_json"].value()
    assert '"resolution_minutes": 99' in raw
    # In JSON mode stray form inputs are ignored: only the document counts.
    edited = raw.replace('"resolution_minutes": 99', '"resolution_minutes": 77')
    saved = editor.post(url(refunds), {"mode": "json", "raw_json": edited, "hours": "24", "action": "save",
                                       "sla-resolution_minutes": "5"})
    assert saved.status_code == 302
    assert QueueConfig.objects.get(queue=refunds, state="draft").sla["resolution_minutes"] == 77
    back = editor.post(url(refunds), {"mode": "json", "raw_json": edited, "hours": "24", "action": "to_form"})
    assert back.context["mode"] == "form" and back.context["sections"].sla["resolution_minutes"].value() == 77


@pytest.mark.parametrize("changes, where", [
    ({"ro-offer_timeout_seconds": "soon"}, ("routing", "offer_timeout_seconds")),
    ({"ro-offer_timeout_seconds": "1"}, ("routing", "offer_timeout_seconds")),  # the meta-schema's range
    ({"ro-offer_timeout_seconds": "9" * 40}, ("routing", "offer_timeout_seconds")),
    ({"ro-cw_chat": "500"}, ("routing", "cw_chat")),
    ({"sla-reopen_window_days": "400"}, ("sla", "reopen_window_days")),
    ({"ro-pw_4": "1e999"}, ("routing", "pw_4")),
    ({"fields-0-name": "order\x00id"}, ("fields", "name")),
    ({"fields-0-name": "has space"}, ("fields", "name")),
    ({"fields-0-description": "x" * 100_000}, ("fields", "description")),
    ({"fields-3-min_length": "3"}, ("fields", "min_length")),  # order_total: lengths are for text fields
    ({"fields-3-minimum": "NaN"}, ("fields", "minimum")),
    ({"fields-2-name": "reason"}, ("fields", "name")),  # two fields with one name
    ({"tg-signal_types": "late delivery"}, ("targeting", "signal_types")),
    ({"tg-treatment_percent": "150", "tg-experiment_name": "x"}, ("targeting", "treatment_percent")),
    ({"cond-0-path": "a..b", "cond-0-op": "eq"}, ("conditions", "path")),
    ({"cond-0-path": "a", "cond-0-op": "eq", "cond-0-value": '"\\u0000"'}, ("conditions", "value")),
    ({"tr-initial_status": "bogus"}, ("transitions", "initial_status")),
    ({"hours": "1" * 30}, ("meta", "hours")),
    ({"comment": "no\x00pe"}, ("meta", "comment")),
    ({"fields-TOTAL_FORMS": "100000"}, ("fields", None)),
])
def test_invalid_input_gives_field_errors_not_a_500(editor, refunds, changes, where):
    response = editor.post(url(refunds), form_data(active_document(refunds), action="save", **changes))
    assert response.status_code == 200
    section, name = where
    if section == "meta":
        errors = response.context["meta"].errors
    else:
        part = getattr(response.context["sections"], section)
        if isinstance(part, forms.BaseFormSet):
            errors = {} if name is None else {k: v for form in part.forms for k, v in form.errors.items()}
            if name is None:
                assert part.non_form_errors()
                errors = {None: part.non_form_errors()}
        else:
            errors = part.errors
    assert errors.get(name), errors
    assert not QueueConfig.objects.filter(queue=refunds, state="draft").exists()


def test_raw_json_refusals_are_field_errors(editor, refunds):
    for raw in ("{not json", '{"transitions": {"new": ["resolved"]}, "sla": {"x": "\\u0000"}}', "[1]",
                '{"transitions": {"new": ["resolved"]}, "routing": {"offer_timeout_seconds": 1e999}}'):
        response = editor.post(url(refunds), {"mode": "json", "raw_json": raw, "hours": "24",
                                              "action": "save"})
        assert response.status_code == 200 and response.context["meta"].errors["raw_json"], raw
    bad = editor.post(url(refunds), {"mode": "json", "hours": "24", "action": "save",
                                     "raw_json": '{"transitions": {"new": ["gone"]}, "bogus": 1}'})
    assert bad.status_code == 200 and set(bad.context["other_errors"]) >= {"bogus", "transitions.new.0"}
    assert not QueueConfig.objects.filter(queue=refunds, state="draft").exists()
    assert editor.get(f"{url(refunds)}?draft=abc").status_code == 404
    assert editor.get(f"{url(refunds)}?draft={10**30}").status_code == 404


def test_check_and_dry_run_show_errors_warnings_and_the_what_if(editor, refunds):
    agent = AgentFactory(skills=["refunds"], queues=[refunds])
    make_case(queue=refunds, fields={"order_id": "O-1"})
    make_case(queue=refunds, fields={"order_id": "O-2"})
    base = active_document(refunds)
    n = len(REFUND_SCHEMA["properties"])
    data = form_data(base, **{f"fields-{n}-name": "channel_reason", f"fields-{n}-required": "on",
                              f"fields-{n}-choices": "a\nb", "ro-required_skills": "refunds\nklingon"})
    checked = editor.post(url(refunds), {**data, "action": "check"})
    sections = checked.context["sections"]
    row = next(f for f in sections.fields.forms if f.cleaned_data.get("name") == "channel_reason")
    assert "2 open cases have no value" in str(row.non_field_errors())
    assert "klingon" in str(sections.routing.warnings["required_skills"])
    assert checked.context["checked"] == {"errors": 1, "warnings": 1}
    page = checked.content.decode()
    assert "2 open cases have no value" in page and "No active agent has the skill" in page
    dry = editor.post(url(refunds), {**data, "action": "dry_run", "hours": "6"})
    assert (dry.context["dry_run"].checked, dry.context["dry_run"].failing) == (2, 2)
    assert dry.context["whatif"].cases == 2
    page = dry.content.decode()
    assert 'id="dry-run"' in page and 'id="whatif"' in page and "last 6 hour(s)" in page
    assert "fields.channel_reason" in page
    # A warning does not stop a draft (nor an error of the cross-checks: publishing decides).
    assert editor.post(url(refunds), {**data, "action": "save"}).status_code == 302
    assert agent.pk and QueueConfig.objects.filter(queue=refunds, state="draft").count() == 1


def test_an_editor_saves_drafts_but_cannot_publish_roll_back_or_rename(client, refunds):
    editor = UserFactory(username="editor-2", roles=["queue-config-editor"])
    client.force_login(editor)
    page = client.get(url(refunds)).content.decode()
    assert 'value="save"' in page and 'value="publish"' not in page
    data = form_data(active_document(refunds), **{"sla-first_response_minutes": "15"})
    assert client.post(url(refunds), {**data, "action": "publish"}).status_code == 403
    assert client.post(url(refunds), {**data, "action": "save"}).status_code == 302
    draft = QueueConfig.objects.get(queue=refunds, state="draft")
    first = QueueConfig.objects.get(queue=refunds, version=1)
    assert client.post(f"/admin/cases/queueconfig/{draft.pk}/publish/").status_code == 403
    assert client.post(f"/admin/cases/queueconfig/{first.pk}/rollback/").status_code == 403
    assert client.post(url(refunds, "rename"), {"old": "reason", "new": "why"}).status_code == 403
    diff = client.get(url(refunds, "diff")).content.decode()
    assert "sla.first_response_minutes" in diff and "publish-form" not in diff
    assert QueueConfig.objects.get(queue=refunds, is_active=True).version == 1
    client.force_login(AgentFactory().user)
    assert client.get(url(refunds)).status_code == 403
    assert client.get(url(refunds, "versions")).status_code == 403
    # Ops publish the editor's draft from the diff page.
    client.force_login(UserFactory(username="ops-2", roles=["ops"]))
    response = client.post(f"/admin/cases/queueconfig/{draft.pk}/publish/", {"comment": "ok"})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert (draft.is_active, draft.state, draft.sla["first_response_minutes"]) == (True, "published", 15)


def test_ops_publish_from_the_editor_and_a_stale_draft_asks_to_rebase(ops, refunds):
    base = active_document(refunds)
    saved = ops.post(url(refunds), form_data(base, action="save", **{"sla-resolution_minutes": "100"}))
    assert saved.status_code == 302
    stale = QueueConfig.objects.get(queue=refunds, state="draft")
    published = ops.post(url(refunds), form_data(base, action="publish", **{"sla-resolution_minutes": "200"}))
    assert published.status_code == 302 and published["Location"].endswith(url(refunds, "versions"))
    assert QueueConfig.objects.get(queue=refunds, is_active=True).sla["resolution_minutes"] == 200
    data = form_data(services.queue_config_document(stale), draft=str(stale.pk), action="publish")
    refused = ops.post(url(refunds), data)
    assert refused.status_code == 200 and "Rebase" not in str(refused.context["other_errors"])
    page = refused.content.decode()
    assert "Publish anyway on top of version 3" in page and "this draft started from version 1" in page
    stale.refresh_from_db()
    assert stale.state == "draft"
    assert ops.post(url(refunds), {**data, "rebase": "1"}).status_code == 302
    active = QueueConfig.objects.get(queue=refunds, is_active=True)
    assert (active.pk, active.sla["resolution_minutes"], active.based_on.version) == (stale.pk, 100, 3)
    # The same from the diff page.
    first = services.queue_config_draft_save(queue=refunds, document=base, user=None)
    other = services.queue_config_draft_save(queue=refunds, document={**base, "sla": {}}, user=None)
    services.queue_config_publish_draft(draft=first, user=None)
    diff = ops.post(f"/admin/cases/queueconfig/{other.pk}/publish/")
    assert diff.status_code == 409 and "Publish anyway on top of version" in diff.content.decode()
    assert ops.post(f"/admin/cases/queueconfig/{other.pk}/publish/", {"rebase": "1"}).status_code == 302


def test_diff_page_history_and_rollback(ops, refunds, django_assert_num_queries):
    first = QueueConfig.objects.get(queue=refunds)
    changed = {**active_document(refunds), "routing": {"strategy": "round_robin"}}
    second = services.queue_config_draft_save(queue=refunds, document=changed, user=None, comment=XSS)
    services.queue_config_publish_draft(draft=second, user=None)
    diff = ops.get(url(refunds, "diff"), {"a": first.pk, "b": second.pk})
    assert [(c["path"], c["kind"]) for c in diff.context["changes"]] == [("routing.strategy", "added")]
    assert "round_robin" in diff.content.decode()
    default = ops.get(url(refunds, "diff"))  # no draft: the active version against the one it started from
    assert (default.context["before"], default.context["after"]) == (first, second)
    assert ops.get(url(refunds, "diff"), {"a": "x"}).status_code == 404
    assert ops.get(url(refunds, "diff"), {"a": QueueFactory().configs.get().pk}).status_code == 404

    def history():
        return ops.get(url(refunds, "versions"))

    # session, user, permissions (user + groups), queue, versions; the same with more versions.
    with django_assert_num_queries(6):
        assert history().status_code == 200
    response = ops.post(f"/admin/cases/queueconfig/{first.pk}/rollback/")
    assert response.status_code == 302
    third = QueueConfig.objects.get(queue=refunds, is_active=True)
    assert (third.version, third.routing, third.comment) == (3, {}, "Rollback to version 1.")
    assert QueueConfig.objects.filter(queue=refunds).count() == 3  # history is never rewritten
    with django_assert_num_queries(6):
        page = history().content.decode()
    assert "Roll back to this version" in page and XSS not in page and "&lt;script&gt;" in page


def test_rename_field_migrates_cases_and_reports_the_count(ops, refunds):
    make_case(queue=refunds, fields={"order_id": "O-1", "reason": "late"})
    make_case(queue=refunds, fields={"order_id": "O-2", "reason": "damaged"})
    make_case(queue=refunds, fields={"order_id": "O-3"})
    bad = ops.post(url(refunds, "rename"), {"old": "reason", "new": "order_id"})
    assert bad.status_code == 200 and bad.context["form"].errors["new"]
    assert ops.post(url(refunds, "rename"), {"old": "nope", "new": "x"}).context["form"].errors["old"]
    response = ops.post(url(refunds, "rename"), {"old": "reason", "new": "why"}, follow=True)
    assert "2 case(s) migrated" in response.content.decode()
    values = sorted(c.fields.get("why", "") for c in Case.objects.filter(queue=refunds))
    assert values == ["", "damaged", "late"]


def test_what_editors_type_is_escaped_wherever_it_is_shown(ops, refunds):
    base = active_document(refunds)
    n = len(REFUND_SCHEMA["properties"])
    response = ops.post(url(refunds), form_data(base, **{
        "action": "publish", "comment": XSS, f"fields-{n}-name": "note", f"fields-{n}-choices": f"ok\n{XSS}",
        f"fields-{n}-description": XSS}))
    assert response.status_code == 302
    config = QueueConfig.objects.get(queue=refunds, is_active=True)
    assert config.fields_schema["properties"]["note"] == {"type": "string", "enum": ["ok", XSS],
                                                          "description": XSS}
    pages = [ops.get(f"{url(refunds)}?draft="), ops.get(url(refunds, "versions")),
             ops.get(url(refunds, "diff"), {"a": config.based_on_id, "b": config.pk}),
             ops.get(f"/admin/cases/case/add/?queue={refunds.pk}")]
    for page in pages:
        assert page.status_code == 200
        assert XSS not in page.content.decode() and "&lt;script&gt;" in page.content.decode()
