"""Legacy import rows that no column could take are per-row errors: impossible or out-of-range
date-times, text PostgreSQL cannot store, numbers out of range, JSON too deep to read. The rest
of the file is imported."""

from __future__ import annotations

import json

import pytest

from apps.cases.legacy import legacy_case_id, legacy_rows
from apps.cases.models import Case
from apps.cases.services import cases_import_legacy
from tests.factories.cases import QueueFactory

pytestmark = pytest.mark.django_db

HEADER = "legacy_id,queue,status,subject,created_at,fields\n"


@pytest.fixture(autouse=True)
def general():
    return QueueFactory(slug="general")


def _import(path):
    summary = cases_import_legacy(rows=legacy_rows(path), batch_size=3)
    return summary, {number: errors for number, errors in summary.errors}


def test_csv_rows_with_values_no_column_takes_are_reported_and_the_rest_imported(tmp_path):
    path = tmp_path / "export.csv"
    path.write_text(HEADER + "".join([
        "OK-1,general,new,Fine,2024-05-01T12:00:00+17:00,{}\n",  # line 2: PostgreSQL alone refuses +17:00
        "BAD-1,general,new,Month,2024-13-01T00:00:00,{}\n",
        "BAD-2,general,new,Offset,2024-01-01T00:00:00+23:59,{}\n",
        "BAD-3,general,new,Year,0001-01-01T00:00:00+01:00,{}\n",
        "BAD-4,general,new,Nul \x00 here,,{}\n",
        'BAD-5,general,new,Number,,"{""total"": 1e999}"\n',
        'BAD-6,general,new,Deep,,"' + "[" * 5_000 + "]" * 5_000 + '"\n',
        'BAD-7,general,new,Escaped NUL,,"{""note"": ""a\\u0000""}"\n',
        "X" * 101 + ",general,new,Long id,,{}\n",
        'OK-2,general,new,Also fine,2024-05-01,"{""n"": 9223372036854775807}"\n',
    ]), encoding="utf-8")
    summary, errors = _import(path)
    assert (summary.rows, summary.imported) == (10, 2)
    assert {number: sorted(row) for number, row in errors.items()} == {
        3: ["created_at"], 4: ["created_at"], 5: ["created_at"], 6: ["subject"], 7: ["fields.total"],
        8: ["fields"], 9: ["fields.note"], 10: ["legacy_id"],
    }
    assert "month" in errors[3]["created_at"][0] and "offset" in errors[4]["created_at"][0]
    assert "out of range" in errors[5]["created_at"][0] and "NUL" in errors[6]["subject"][0]
    assert "finite" in errors[7]["fields.total"][0] and errors[8]["fields"] == ["Not valid JSON."]
    assert "NUL" in errors[9]["fields.note"][0] and "100" in errors[10]["legacy_id"][0]
    first = Case.objects.get(pk=legacy_case_id("OK-1"))
    assert first.created_at.isoformat() == "2024-04-30T19:00:00+00:00"
    assert Case.objects.get(pk=legacy_case_id("OK-2")).fields == {"n": 9223372036854775807}


def test_json_lines_with_values_no_column_takes_are_reported_by_field(tmp_path):
    good = {"legacy_id": "J-1", "queue": "general", "fields": {"reason": "late"}}
    path = tmp_path / "export.jsonl"
    path.write_text("\n".join([
        json.dumps(good),
        '{"legacy_id": "J-2", "queue": "general", "subject": "a\\u0000b"}',
        '{"legacy_id": "J-3", "queue": "general", "subject": "a\\ud800b"}',
        '{"legacy_id": "J-4", "queue": "general", "fields": {"n": [NaN]}}',
        f'{{"legacy_id": "J-5", "queue": "general", "priority": {2**70}}}',
        '{"legacy_id": "J-6", "queue": "general", "fields": ' + "[" * 100_000 + "]" * 100_000 + "}",
        '{"legacy_id": "J-7", "queue": "general", "created_at": "2024-01-01T00:00:00-20:00"}',
    ]) + "\n", encoding="utf-8")
    summary, errors = _import(path)
    assert (summary.rows, summary.imported) == (7, 1)
    assert {number: sorted(row) for number, row in errors.items()} == {
        2: ["subject"], 3: ["subject"], 4: ["fields.n.0"], 5: ["priority"], 6: ["non_field_errors"],
        7: ["created_at"],
    }
    assert errors[6]["non_field_errors"][0].startswith("Invalid JSON")
    assert Case.objects.get(pk=legacy_case_id("J-1")).fields == {"reason": "late"}
