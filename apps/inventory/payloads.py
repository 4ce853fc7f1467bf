"""Where raw feed payloads live: one store for every process on every host, chosen by
INVENTORY_PAYLOAD_STORE: PostgreSQL (chunks of bytea, the default) or a Django storage alias.

Both are Django storages, so feeds, runs, the admin download and the purge use one API. A run
reads its payload as a local seekable file: chunks are fetched a few at a time into a spooled
temporary file (memory up to SPOOL_MEMORY_BYTES, disk beyond), never the whole payload at once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable

from django.core.files.base import File
from django.core.files.storage import Storage, storages
from django.db import connection, transaction
from django.utils.deconstruct import deconstructible

from apps.inventory import conf
from apps.inventory.models import PayloadChunk

CHUNK_BYTES = 1024 * 1024
# Chunks per statement, both ways: a 10,000-item feed (~1 MB) is written and read in one.
CHUNKS_PER_STATEMENT = 4
SPOOL_MEMORY_BYTES = 8 * 1024 * 1024

READ_SQL = """
SELECT seq, data FROM inventory_payloadchunk WHERE name = %s AND seq >= %s ORDER BY seq LIMIT %s
"""


@deconstructible
class DatabasePayloadStorage(Storage):
    """Payloads as rows of inventory_payloadchunk, in the database every process already shares."""

    def _save(self, name: str, content) -> str:
        # All chunks or none: a reader never sees half a payload.
        with transaction.atomic():
            pending: list[PayloadChunk] = []
            seq = 0
            for piece in _pieces(content):
                pending.append(PayloadChunk(name=name, seq=seq, data=piece))
                seq += 1
                if len(pending) == CHUNKS_PER_STATEMENT:
                    PayloadChunk.objects.bulk_create(pending)
                    pending = []
            if pending or not seq:
                PayloadChunk.objects.bulk_create(pending or [PayloadChunk(name=name, seq=0, data=b"")])
        return name

    def _open(self, name: str, mode: str = "rb") -> File:
        if "w" in mode or "a" in mode or "+" in mode:
            raise ValueError("Payloads are written once, through save().")
        spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY_BYTES)  # noqa: SIM115
        seq = 0
        with connection.cursor() as cursor:
            while True:
                cursor.execute(READ_SQL, [name, seq, CHUNKS_PER_STATEMENT])
                rows = cursor.fetchall()
                for _seq, data in rows:
                    spool.write(data)
                seq += len(rows)
                if len(rows) < CHUNKS_PER_STATEMENT:
                    break
        if not seq:
            spool.close()
            raise FileNotFoundError(f"No payload named {name!r}.")
        spool.seek(0)
        return File(spool, name=name)

    def exists(self, name: str) -> bool:
        return PayloadChunk.objects.filter(name=name, seq=0).exists()

    def delete(self, name: str) -> None:
        PayloadChunk.objects.filter(name=name).delete()

    def delete_many(self, names: list[str]) -> None:
        """One statement for a batch of payloads (the purge)."""
        PayloadChunk.objects.filter(name__in=names).delete()

    def size(self, name: str) -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT sum(octet_length(data)) FROM inventory_payloadchunk WHERE name = %s", [name]
            )
            total = cursor.fetchone()[0]
        if total is None:
            raise FileNotFoundError(f"No payload named {name!r}.")
        return int(total)


def _pieces(content) -> Iterable[bytes]:
    if hasattr(content, "seek"):
        content.seek(0)
    yield from content.chunks(CHUNK_BYTES)


_database_storage = DatabasePayloadStorage()


def payload_storage() -> Storage:
    """The configured payload store (read at call time, so tests can switch it)."""
    if conf.payload_store() == "database":
        return _database_storage
    return storages[conf.payload_storage_alias()]


def payloads_delete(names: list[str]) -> None:
    """Delete stored payloads by name, in one statement where the store allows it."""
    storage = payload_storage()
    if isinstance(storage, DatabasePayloadStorage):
        storage.delete_many(names)
        return
    for name in names:
        storage.delete(name)
