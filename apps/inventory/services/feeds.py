"""Feeds in: a whole store's JSON or CSV feed is checked, stored raw, and becomes a queued run.

The stored payload (in the payload store, apps/inventory/payloads.py) is what the run reads back
(feed_json_items, feed_csv_rows), so the two formats are parsed here and only here.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import BinaryIO

from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from apps.core.errors import ApplicationError
from apps.core.input import JSONDocumentError, json_document_load
from apps.inventory import conf
from apps.inventory.models import IngestionRun, RunSource, Store
from apps.inventory.payloads import payload_storage
from apps.inventory.services.scheduling import ingestion_run_schedule

CSV_REQUIRED = ("sku", "available")
CSV_PRICE_COLUMNS = ("price", "unit_price")
CSV_CONTENT_TYPES = {
    "text/csv",
    "application/csv",
    "text/plain",
    "application/vnd.ms-excel",
    "application/octet-stream",
}
CSV_ENCODING = "utf-8-sig"  # UTF-8, with or without the byte-order mark spreadsheets write
MAX_FEED_ITEMS = 500_000
# Problems found inside one item ("items.3.price": 1e400) are that item's: the pipeline rejects
# it alone, with a reason, and applies the rest of the feed.
_ITEM_PATH = re.compile(r"items\.\d+(?:\.|$)")


def _run_create(
    *,
    store: Store,
    source: str,
    body: bytes,
    suffix: str,
    items_total: int,
    batch_size: int | None,
    enqueue: bool,
) -> IngestionRun:
    # The raw payload is stored before the run exists, so a run never points at nothing.
    name = f"inventory/feeds/{store.pk}/{uuid.uuid4().hex}.{suffix}"
    path = payload_storage().save(name, ContentFile(body))
    now = timezone.now()
    with transaction.atomic():
        run = IngestionRun.objects.create(
            store=store,
            source=source,
            items_total=items_total,
            batch_size=batch_size or conf.batch_size(),
            max_attempts=conf.max_attempts(),
            heartbeat_at=now,
            payload_path=path,
            payload_bytes=len(body),
            payload_expires_at=now + timedelta(days=conf.payload_ttl_days()),
        )
        if enqueue:
            ingestion_run_schedule(run_id=run.pk)
    return run


def feed_submit_json(
    *, store: Store, body: bytes, batch_size: int | None = None, enqueue: bool = True
) -> IngestionRun:
    """Accept a whole-store JSON feed `{"items": [...]}`: persist it raw, create a run, enqueue it.

    The whole feed is refused only when it is not JSON, too deep to read, or not shaped as a
    feed; a bad value inside an item is left for the pipeline to reject with that item.
    """
    document = _feed_document(body)
    if not isinstance(document, dict) or "items" not in document:
        raise ApplicationError("Invalid feed.", errors={"items": ["This field is required."]})
    items = document["items"]
    if not isinstance(items, list):
        raise ApplicationError("Invalid feed.", errors={"items": ["Must be a list of items."]})
    if len(items) > MAX_FEED_ITEMS:
        raise ApplicationError(
            "Invalid feed.", errors={"items": [f"At most {MAX_FEED_ITEMS} items per feed."]}
        )
    return _run_create(
        store=store,
        source=RunSource.API,
        body=body,
        suffix="json",
        items_total=len(items),
        batch_size=batch_size,
        enqueue=enqueue,
    )


def _feed_document(body: bytes):
    # Strings are the pipeline's to judge (an unprintable SKU is rejected as such, per item).
    try:
        return json_document_load(body, strings=False)
    except JSONDocumentError as exc:
        outside_items = {path: messages for path, messages in exc.errors.items()
                         if not _ITEM_PATH.match(path)}
        if exc.code == "parse_error" or outside_items:
            raise ApplicationError(exc.message, errors=outside_items or exc.errors, code=exc.code) from None
    # Only items have values that cannot be taken (rare): read again, as the run will.
    return json.loads(body, parse_constant=float)


def csv_upload_check_size(*, size: int) -> None:
    """Refuse an oversized CSV feed; for an upload, before reading it into memory."""
    if size > conf.csv_max_bytes():
        raise ApplicationError(
            "File too large.",
            errors={"file": [f"The file is {size} bytes; the limit is {conf.csv_max_bytes()} bytes."]},
        )


def _csv_header(reader) -> list[str]:
    """The header row as column names: case and surrounding blanks do not matter."""
    return [column.strip().lower() for column in next(reader, [])]


def feed_submit_csv(
    *,
    store: Store,
    name: str,
    content_type: str,
    body: bytes,
    batch_size: int | None = None,
    enqueue: bool = True,
) -> IngestionRun:
    """Accept an ops CSV upload after checking size, type, encoding and header columns."""
    csv_upload_check_size(size=len(body))
    if not name.lower().endswith(".csv"):
        raise ApplicationError("Not a CSV file.", errors={"file": ["The file name must end with .csv."]})
    if (content_type or "").split(";")[0].strip().lower() not in CSV_CONTENT_TYPES:
        raise ApplicationError(
            "Not a CSV file.", errors={"file": [f"Unsupported content type {content_type!r}."]}
        )
    try:
        text = body.decode(CSV_ENCODING)
    except UnicodeDecodeError as exc:
        raise ApplicationError("Unreadable file.", errors={"file": ["The file is not UTF-8 text."]}) from exc
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = _csv_header(reader)
        rows = sum(1 for row in reader if row)
    except csv.Error as exc:
        raise ApplicationError("Unreadable file.", errors={"file": [f"Malformed CSV: {exc}"]}) from exc
    missing = [column for column in CSV_REQUIRED if column not in header]
    if not any(column in header for column in CSV_PRICE_COLUMNS):
        missing.append("price (or unit_price)")
    if missing:
        raise ApplicationError(
            "Missing columns.", errors={"file": [f"The header must contain: {', '.join(missing)}."]}
        )
    return _run_create(
        store=store,
        source=RunSource.CSV,
        body=body,
        suffix="csv",
        items_total=rows,
        batch_size=batch_size,
        enqueue=enqueue,
    )


def feed_submit_csv_upload(*, store: Store, upload: UploadedFile) -> IngestionRun:
    """An uploaded CSV file (admin form, API multipart): its size is checked before it is read."""
    csv_upload_check_size(size=upload.size)
    return feed_submit_csv(
        store=store, name=upload.name, content_type=upload.content_type, body=upload.read()
    )


def feed_json_items(*, payload: BinaryIO) -> list:
    """A stored JSON feed's items (checked to be a list when it was submitted)."""
    return json.load(payload)["items"]


def feed_csv_rows(*, payload: BinaryIO) -> Iterator[dict]:
    """Stream a stored CSV feed, from where `payload` stands, as dicts keyed by lower-cased header
    names. The payload stays open (and seekable) for the caller to read again."""
    text = io.TextIOWrapper(payload, encoding=CSV_ENCODING, newline="")
    try:
        reader = csv.reader(text)
        header = _csv_header(reader)
        for row in reader:
            if row:
                yield dict(zip(header, row, strict=False))
    finally:
        # A wrapper closes what it wraps when it goes away; the payload is not ours to close.
        text.detach()
