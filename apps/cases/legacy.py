"""Legacy CRM interop: stable case ids (UUID v5) and parsing of export files (CSV / JSON lines).

The namespace is a constant of the project, so a legacy id maps to the same case id on every
machine, in every run: re-importing a file finds the cases it created before.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

from apps.core.input import JSONDocumentError, json_document_load

# Fixed forever: changing it would give every imported case a new id.
LEGACY_NAMESPACE = uuid.UUID("6f1c2a4e-9b7d-5e3f-8a21-c45e0d9b7a10")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")


def legacy_case_id(legacy_id: str) -> uuid.UUID:
    return uuid.uuid5(LEGACY_NAMESPACE, f"legacy-crm:case:{legacy_id.strip()}")


def legacy_format(path: str | Path, fmt: str | None = None) -> str:
    """The export's format, "csv" or "jsonl": `fmt` when given, else from the file's suffix."""
    return fmt or ("jsonl" if Path(path).suffix.lower() in JSONL_SUFFIXES else "csv")


def legacy_rows(path: str | Path, *, fmt: str | None = None) -> Iterator[tuple[int, dict | str]]:
    """(row number, row) for each data row; a row that cannot be parsed is yielded as its error text.

    CSV: a header row; the `fields` column holds a JSON object. JSON lines: one object a line.
    Row numbers are 1-based lines of the file (the CSV header is line 1).
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as handle:
        if legacy_format(path, fmt) == "csv":
            reader = csv.DictReader(handle)
            for row in reader:
                yield reader.line_num, dict(row)
            return
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json_document_load(line)
            except JSONDocumentError as exc:
                if exc.code == "parse_error":  # not JSON, or nested past what can be read
                    reason = next(iter(exc.errors.values()))[0]
                    yield number, f"Invalid JSON: {reason.rstrip('.')}."
                    continue
                # Values no column can take: the row's check reports each by its field.
                row = json.loads(line, parse_constant=float)
            yield number, row if isinstance(row, dict) else "Each line must be a JSON object."


def count_rows(path: str | Path, *, fmt: str | None = None) -> int:
    """About how many data rows the file holds (non-blank lines, less a CSV header): for progress."""
    with Path(path).open("rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    return max(0, lines - 1) if legacy_format(path, fmt) == "csv" else lines
