"""Admission validation of spec documents, on every path (service, admin form, folder sync)."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command

from apps.core.errors import ApplicationError
from apps.health.models import CheckResult, HealthCheck, HealthSpec
from apps.health.services import health_spec_apply

pytestmark = pytest.mark.django_db

VALID = """
description: demo
defaults: {interval: 20, timeout: 3}
checks:
  - name: db
    type: database
  - name: web
    type: http
    interval: 10
    params: {url: "http://127.0.0.1:9/healthz", expected_status: [200, 204], body_regex: "ok"}
"""


def test_valid_yaml_is_stored_normalised_with_its_checks():
    spec, action = health_spec_apply(name="platform", document=VALID)
    assert action == "created" and spec.source_format == "yaml" and spec.source == VALID
    checks = {c.name: c for c in spec.checks.all()}
    assert set(checks) == {"db", "web"}
    assert (checks["db"].interval_s, checks["db"].timeout_s) == (20, 3)
    assert (checks["web"].interval_s, checks["web"].params["expected_status"]) == (10, [200, 204])
    assert spec.document["checks"][0] == {"name": "db", "type": "database", "interval": 20.0, "timeout": 3.0,
                                          "grace_period": 0.0, "params": {}}
    assert health_spec_apply(name="platform", document=VALID)[1] == "unchanged"


def test_json_text_is_accepted():
    text = json.dumps({"checks": [{"name": "db", "type": "database"}]})
    spec, _ = health_spec_apply(name="j", document=text)
    assert spec.source_format == "json" and spec.checks.count() == 1


def _check(**fields):
    return {"checks": [{"name": "c", "type": "database", **fields}]}


def _res(assertions, **params):
    if "model" not in params:
        params["url"] = "http://x/"
    return _check(type="resource", params={"assertions": assertions, **params})


COUNT = [{"path": "$.count", "operator": "NotEmpty"}]
INVALID = [
    ("not: [valid", "document"),
    ("", "document"),
    ("- just a list", "document"),
    ({"checks": [{"type": "database"}]}, "checks.0.name"),
    ({"checks": [{"name": "Bad Name!", "type": "database"}]}, "checks.0.name"),
    ({"checks": [], "extra": 1}, "non_field_errors"),
    ({"checks": [{"name": "a", "type": "database"}, {"name": "a", "type": "redis"}]}, "checks.1.name"),
    (_check(type="carrier-pigeon"), "checks.0.type"),
    (_check(interval=10, timeout=11), "checks.0.timeout"),
    (_check(interval=0), "checks.0.interval"),
    (_check(interval=600, timeout=61), "checks.0.timeout"),
    (_check(grace_period=-1), "checks.0.grace_period"),
    (_check(type="http", params={}), "checks.0.params.url"),
    (_check(type="http", params={"url": "not a url"}), "checks.0.params.url"),
    (_check(type="http", params={"url": "http://x:99999/"}), "checks.0.params.url"),
    (_check(type="http", params={"url": "http://x/", "body_regex": "(x"}), "checks.0.params.body_regex"),
    (_check(type="http", params={"url": "http://x/", "method": "BREW"}), "checks.0.params.method"),
    (_check(type="grpc", params={"target": "no-port"}), "checks.0.params.target"),
    (_check(type="tcp", params={"host": "h", "port": 70000}), "checks.0.params.port"),
    (_check(type="log_grep", params={"path": "/var/log/x", "pattern": "[a-"}), "checks.0.params.pattern"),
    (_check(type="log_grep", params={"path": "relative.log", "pattern": "x"}), "checks.0.params.path"),
    (_res([{"path": "$.[", "operator": "NotEmpty"}]), "checks.0.params.assertions.0.path"),
    (_res([{"path": "$.a", "operator": "RegexMatch", "value": "(("}]), "checks.0.params.assertions.0.value"),
    (_res([{"path": "$.a", "operator": "Like"}]), "checks.0.params.assertions.0.operator"),
    (_res([{"path": "$.a", "operator": "LessThan", "value": "x"}]), "checks.0.params.assertions.0.value"),
    (_res(COUNT, model="health.Nope"), "checks.0.params.model"),
    (_res(COUNT, model="auth.User"), "checks.0.params.model"),
    (_res(COUNT, model="health.HealthSpec", filter={"colour": "red"}), "checks.0.params.filter"),
    (_check(type="resource", params={"assertions": [{"path": "$.a", "operator": "NotEmpty"}]}),
     "checks.0.params"),
    (_check(type="celery_workers", params={"queues": []}), "checks.0.params.queues"),
    (_check(type="database", params={"alias": "replica-9"}), "checks.0.params.alias"),
    (_check(type="redis", params={"url": "http://x"}), "checks.0.params.url"),
    ({"name": "other", "checks": []}, "name"),
]


@pytest.mark.parametrize(("document", "field"), INVALID, ids=[f for _, f in INVALID])
def test_invalid_documents_are_rejected_field_by_field_and_nothing_is_saved(document, field):
    HealthSpec.objects.all().delete()
    with pytest.raises(ApplicationError) as caught:
        health_spec_apply(name="s", document=document)
    assert field in caught.value.errors, caught.value.errors
    assert not HealthSpec.objects.exists() and not HealthCheck.objects.exists()


@pytest.mark.parametrize("name", ["", "has space", "-leading", "a/b", "x" * 101, "ünïcode"])
def test_spec_names_are_plain(name):
    with pytest.raises(ApplicationError) as caught:
        health_spec_apply(name=name, document="checks: []")
    assert set(caught.value.errors) == {"name"}
    assert not HealthSpec.objects.exists()


def test_the_database_refuses_a_spec_name_the_service_would_refuse():
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        HealthSpec.objects.create(name="has space", source="checks: []")


def test_an_invalid_edit_keeps_the_last_good_version():
    spec, _ = health_spec_apply(name="s", document=VALID)
    with pytest.raises(ApplicationError):
        health_spec_apply(name="s", document=VALID.replace("type: database", "type: nope"))
    spec.refresh_from_db()
    assert spec.source == VALID and spec.checks.count() == 2


# Folder sync (apply_health_specs) -------------------------------------------------------------

def test_apply_health_specs_syncs_a_folder(tmp_path, capsys):
    (tmp_path / "platform.yaml").write_text(VALID)
    (tmp_path / "search.json").write_text(json.dumps({"checks": [{"name": "db", "type": "database"}]}))
    (tmp_path / "notes.txt").write_text("ignored")
    call_command("apply_health_specs", str(tmp_path))
    out = capsys.readouterr().out
    assert "created   platform" in out and "created   search" in out
    assert set(HealthSpec.objects.values_list("name", flat=True)) == {"platform", "search"}
    assert HealthSpec.objects.get(name="platform").managed_by == str(tmp_path.resolve())

    # Edit one, remove one, add a broken one: the broken one is reported and nothing of it stored.
    (tmp_path / "platform.yaml").write_text(VALID.replace("interval: 10", "interval: 15"))
    (tmp_path / "search.json").unlink()
    (tmp_path / "broken.yml").write_text("checks:\n  - {name: x, type: http, params: {url: nope}}\n")
    with pytest.raises(CommandError, match="1 invalid"):
        call_command("apply_health_specs", str(tmp_path))
    captured = capsys.readouterr()
    assert "updated   platform" in captured.out and "deleted   search" in captured.out
    assert "invalid   broken" in captured.err and "checks.0.params.url" in captured.err
    assert set(HealthSpec.objects.values_list("name", flat=True)) == {"platform"}
    assert HealthCheck.objects.get(spec__name="platform", name="web").interval_s == 15

    (tmp_path / "broken.yml").unlink()
    call_command("apply_health_specs", str(tmp_path))
    assert "unchanged platform" in capsys.readouterr().out


def test_folder_sync_does_not_take_over_a_spec_edited_in_admin(tmp_path):
    health_spec_apply(name="platform", document=VALID)
    (tmp_path / "platform.yaml").write_text(VALID)
    with pytest.raises(CommandError):
        call_command("apply_health_specs", str(tmp_path))
    assert HealthSpec.objects.get(name="platform").managed_by == ""


def test_folder_sync_deletes_results_of_removed_specs(tmp_path):
    (tmp_path / "gone.yaml").write_text("checks: [{name: db, type: database}]")
    call_command("apply_health_specs", str(tmp_path))
    check = HealthCheck.objects.get(spec__name="gone")
    CheckResult.objects.create(health_check=check, status="success", duration_ms=1,
                               created_at=check.next_run_at)
    (tmp_path / "gone.yaml").unlink()
    call_command("apply_health_specs", str(tmp_path))
    assert not HealthSpec.objects.exists() and not CheckResult.objects.exists()


def test_an_unreadable_file_is_reported_and_its_spec_kept(tmp_path, capsys):
    (tmp_path / "platform.yaml").write_text(VALID)
    call_command("apply_health_specs", str(tmp_path))
    (tmp_path / "platform.yaml").write_bytes(b"checks: [\xff\xfe]")  # not UTF-8
    with pytest.raises(CommandError, match="1 invalid"):
        call_command("apply_health_specs", str(tmp_path))
    assert "Cannot read" in capsys.readouterr().err
    assert HealthSpec.objects.get(name="platform").source == VALID  # not deleted, not changed


def test_missing_folder_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="not a directory"):
        call_command("apply_health_specs", str(tmp_path / "nope"))


def test_two_files_naming_the_same_spec_are_reported(tmp_path):
    (tmp_path / "a.yaml").write_text("name: shared\nchecks: [{name: db, type: database}]")
    (tmp_path / "b.json").write_text('{"name": "shared", "checks": []}')
    with pytest.raises(CommandError, match="1 invalid"):
        call_command("apply_health_specs", str(tmp_path))
    assert HealthSpec.objects.get(name="shared").checks.count() == 1


def test_a_log_path_that_is_not_a_regular_file_is_refused(tmp_path):
    document = _check(type="log_grep", params={"path": str(tmp_path), "pattern": "x"})
    with pytest.raises(ApplicationError) as caught:
        health_spec_apply(name="dir", document=document)
    assert "checks.0.params.path" in caught.value.errors


def test_log_paths_can_be_limited_to_allowed_folders(settings, tmp_path):
    settings.HEALTH_LOG_ROOTS = [str(tmp_path / "logs")]
    allowed = _check(type="log_grep", params={"path": str(tmp_path / "logs" / "app.log"), "pattern": "x"})
    assert health_spec_apply(name="ok", document=allowed)[1] == "created"
    for outside in ("/etc/shadow", str(tmp_path / "logs" / ".." / "secret.log")):
        document = _check(type="log_grep", params={"path": outside, "pattern": "x"})
        with pytest.raises(ApplicationError) as caught:
            health_spec_apply(name="no", document=document)
        assert "checks.0.params.path" in caught.value.errors
