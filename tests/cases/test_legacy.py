"""Legacy interop: stable UUID v5 ids and the idempotent import command with per-row errors."""

import json
import uuid

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.cases.legacy import LEGACY_NAMESPACE, legacy_case_id
from apps.cases.models import Case, CaseEvent, Source, Status
from tests.factories.cases import REFUND_SCHEMA, QueueFactory
from tests.utils.concurrency import run_at_once


def test_uuid5_is_stable_across_machines():
    # Pinned literals: these ids are stored; changing the namespace or the name format would
    # give every imported case a new id and break re-imports.
    assert uuid.UUID("6f1c2a4e-9b7d-5e3f-8a21-c45e0d9b7a10") == LEGACY_NAMESPACE
    assert str(legacy_case_id("CRM-1")) == "72c185e0-1f32-51e1-a523-cda695000204"
    assert legacy_case_id("CRM-1").version == 5
    assert legacy_case_id(" CRM-1 ") == legacy_case_id("CRM-1")
    assert legacy_case_id("CRM-2") != legacy_case_id("CRM-1")


CSV = """legacy_id,queue,status,priority,channel,subject,merchant_ref,created_at,fields
CRM-1,refunds,new,2,email,Refund,m-1001,2025-01-02T10:00:00Z,"{""order_id"": ""A-1"", ""order_total"": 10}"
CRM-2,refunds,resolved,3,phone,Done,m-1002,2025-01-03T10:00:00Z,"{""order_id"": ""A-2""}"
CRM-3,nowhere,new,2,email,Bad queue,m-1001,,{}
CRM-4,refunds,frozen,9,email,Bad status,m-1001,,"{""order_total"": ""lots""}"
CRM-5,refunds,new,2,email,Bad json,m-1001,,{oops
"""


@pytest.fixture
def refunds(db):
    return QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)


@pytest.mark.django_db
def test_import_csv_is_idempotent_and_reports_rows(refunds, tmp_path, capsys):
    path = tmp_path / "export.csv"
    path.write_text(CSV)
    call_command("import_legacy_cases", str(path), "--no-progress")
    out, err = capsys.readouterr()
    assert "5 rows: 2 imported, 0 already present, 3 with errors." in out
    assert "row 4: queue: Unknown queue 'nowhere'." in err
    assert "row 5: status: Unknown status 'frozen'." in err and "priority: An integer from 1 to 4." in err
    assert "fields.order_id: This field is required." in err
    assert "row 6: fields: Not valid JSON." in err
    case = Case.objects.get(pk=legacy_case_id("CRM-1"))
    assert case.legacy_id == "CRM-1" and case.source == Source.LEGACY_IMPORT
    assert case.fields == {"order_id": "A-1", "order_total": 10}
    assert case.created_at.isoformat() == "2025-01-02T10:00:00+00:00"
    resolved = Case.objects.get(pk=legacy_case_id("CRM-2"))
    assert resolved.status == Status.RESOLVED and resolved.resolved_at is not None
    assert CaseEvent.objects.filter(kind="created").count() == 2

    call_command("import_legacy_cases", str(path), "--no-progress")
    out, _ = capsys.readouterr()
    assert "5 rows: 0 imported, 2 already present, 3 with errors." in out
    assert Case.objects.count() == 2 and CaseEvent.objects.count() == 2


@pytest.mark.django_db
def test_import_jsonl_with_small_batches(refunds, tmp_path, capsys, caplog):
    path = tmp_path / "export.jsonl"
    lines = [json.dumps({"legacy_id": f"J-{n}", "queue": "refunds", "fields": {"order_id": f"O-{n}"}})
             for n in range(7)]
    lines.insert(3, "not json")
    lines.append(json.dumps(["not", "an", "object"]))
    path.write_text("\n".join(lines) + "\n")
    with CaptureQueriesContext(connection) as queries:
        call_command("import_legacy_cases", str(path), "--no-progress", "--batch-size", "2")
    out, err = capsys.readouterr()
    assert "9 rows: 7 imported, 0 already present, 2 with errors." in out
    # A bulk load ends by merging the GIN pending list, so dynamic-field searches keep the index.
    assert any("gin_clean_pending_list" in q["sql"] for q in queries.captured_queries)
    assert "could not flush" not in caplog.text
    assert "row 4: non_field_errors: Invalid JSON" in err
    assert "row 9: non_field_errors: Each line must be a JSON object." in err
    assert set(Case.objects.values_list("legacy_id", flat=True)) == {f"J-{n}" for n in range(7)}


@pytest.mark.django_db
def test_import_shows_a_progress_bar_and_a_summary(refunds, tmp_path, capsys):
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps({"legacy_id": f"P-{n}", "queue": "refunds",
                                        "fields": {"order_id": f"O-{n}"}}) + "\n" for n in range(5)))
    call_command("import_legacy_cases", str(path), "--progress", "--batch-size", "2")
    out, err = capsys.readouterr()
    assert "importing cases" in err and "5/5" in err
    assert out.strip().endswith("5 rows: 5 imported, 0 already present, 0 with errors.")


@pytest.mark.django_db
def test_import_refuses_a_status_the_queue_does_not_use(tmp_path, capsys):
    QueueFactory(slug="simple", config__transitions={"new": ["resolved"], "resolved": []})
    path = tmp_path / "export.jsonl"
    path.write_text(json.dumps({"legacy_id": "S-1", "queue": "simple", "status": "pending_customer"}) + "\n"
                    + json.dumps({"legacy_id": "S-2", "queue": "simple", "status": "resolved"}) + "\n"
                    + json.dumps({"legacy_id": "S-3", "queue": "simple"}) + "\n")
    call_command("import_legacy_cases", str(path), "--no-progress")
    out, err = capsys.readouterr()
    assert "row 1: status: Queue 'simple' does not use status 'pending_customer'." in err
    assert "3 rows: 2 imported, 0 already present, 1 with errors." in out
    assert Case.objects.get(legacy_id="S-3").status == Status.NEW


@pytest.mark.django_db(transaction=True)
def test_the_same_file_imported_twice_at_once_imports_each_case_once(tmp_path):
    from apps.cases.legacy import legacy_rows
    from apps.cases.services import cases_import_legacy

    QueueFactory(slug="refunds", config__fields_schema=REFUND_SCHEMA)
    path = tmp_path / "export.jsonl"
    path.write_text("".join(json.dumps({"legacy_id": f"C-{n}", "queue": "refunds",
                                        "fields": {"order_id": f"O-{n}"}}) + "\n" for n in range(60)))
    summaries = run_at_once(lambda: cases_import_legacy(rows=legacy_rows(path), batch_size=7), 2)
    assert sum(s.imported for s in summaries) == 60 and sum(s.already_present for s in summaries) == 60
    assert Case.objects.count() == 60 and CaseEvent.objects.filter(kind="created").count() == 60


@pytest.mark.django_db
def test_an_unreadable_file_is_a_clear_command_error(refunds, tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_legacy_cases", str(tmp_path / "missing.csv"), "--no-progress")
    latin = tmp_path / "latin.csv"
    latin.write_bytes("legacy_id,queue,subject\nCRM-1,refunds,caf\xe9\n".encode("latin-1"))
    with pytest.raises(CommandError, match="Cannot parse"):
        call_command("import_legacy_cases", str(latin), "--no-progress")
