"""Log grep: count lines matching a pattern in a log file, fail when a window holds too many.

The file offset, inode, a fingerprint of the file's head and recent match counts live in the
check's state, kept per host by the runner (the check runs only on the host it is pinned to), so
a restarted runner resumes where the last one stopped. With `stream: true` the file
handle stays open between runs in the process that ran it (see apps.health.streams).

Rotation loses no line that can still be read. Renamed away (`app.log` -> `app.log.1`, a new
`app.log`): the rest of the old file is read from the stored offset, through the stream's open
handle or the sibling that has the old inode. Copied then truncated in place (copytruncate, same
inode, smaller or with another head): the rest is read from the sibling copy whose head matches.
When neither can be found the summary says that lines may have been missed.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from stat import S_ISREG
from typing import IO

from django.conf import settings

from apps.health.checks.base import Check, CheckOutcome, register
from apps.health.checks.network import regex_errors
from apps.health.streams import STREAMS

MAX_BYTES_PER_RUN = 16 * 1024 * 1024  # a burst of logging is caught up over several runs
READ_BYTES = 1024 * 1024  # the rest of a rotated file is read whole, this much at a time
# The first bytes of a log tell a copy of it from another file, and its truncated successor
# from itself (they start with other timestamps).
HEAD_BYTES = 256
MISSED = ("the log was rotated and the rest of the old file was not found: "
          "lines written before the rotation may have been missed")


def _count(data: bytes, regex: re.Pattern) -> int:
    return sum(1 for line in data.decode("utf-8", "replace").splitlines() if regex.search(line))


def _scan(handle: IO[bytes], start: int, regex: re.Pattern, *, limit: int | None = None,
          finished: bool = False) -> tuple[int, int]:
    """(matches, bytes consumed) reading whole lines from `start`, at most `limit` bytes. A half-written
    last line waits for the next run, unless the file is `finished` (rotated: nothing more comes)."""
    handle.seek(start)
    matches = consumed = 0
    carry = b""
    while limit is None or consumed + len(carry) < limit:
        want = READ_BYTES if limit is None else min(READ_BYTES, limit - consumed - len(carry))
        data = handle.read(want)
        if not data:
            if finished and carry:
                matches += _count(carry, regex)
                consumed += len(carry)
                carry = b""
            break
        data = carry + data
        end = data.rfind(b"\n") + 1
        matches += _count(data[:end], regex)
        consumed += end
        carry = data[end:]
    handle.seek(start + consumed)
    return matches, consumed


def _head(handle: IO[bytes], length: int) -> str:
    # pread: a stream's position stays where the scan left it.
    return hashlib.sha1(os.pread(handle.fileno(), length, 0), usedforsecurity=False).hexdigest()


def _siblings(path: str, *, exclude_inode: int) -> list[tuple[str, os.stat_result]]:
    """Rotated copies of `path` beside it (`app.log.1`, `app.log-20250101`), newest first."""
    folder, name = os.path.split(path)
    found = []
    try:
        entries = list(os.scandir(folder or "."))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith((f"{name}.", f"{name}-")):
            continue
        try:
            stat = entry.stat()
        except OSError:
            continue
        if S_ISREG(stat.st_mode) and stat.st_ino != exclude_inode:
            found.append((entry.path, stat))
    return sorted(found, key=lambda item: item[1].st_mtime, reverse=True)


def _renamed_file(path: str, *, inode: int, current_inode: int) -> IO[bytes] | None:
    """The old file, renamed beside `path`, found by its inode."""
    for sibling, stat in _siblings(path, exclude_inode=current_inode):
        if stat.st_ino == inode:
            try:
                return open(sibling, "rb")
            except OSError:
                return None
    return None


def _copied_file(path: str, *, offset: int, head: list | None, current_inode: int) -> IO[bytes] | None:
    """The copy of the file taken before it was truncated in place: at least `offset` bytes, same head."""
    if head is None:
        return None  # state from before heads were kept: an older rotation could pass for the copy
    for sibling, stat in _siblings(path, exclude_inode=current_inode):
        if stat.st_size < offset:
            continue
        try:
            handle = open(sibling, "rb")  # noqa: SIM115 - the caller closes it
        except OSError:
            continue
        if _head(handle, head[0]) == head[1]:
            return handle
        handle.close()
    return None


@register
class LogGrepCheck(Check):
    type_name = "log_grep"
    host_local = True
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["path", "pattern"],
        "properties": {
            "path": {"type": "string", "minLength": 1},
            "pattern": {"type": "string", "minLength": 1},
            "window_s": {"type": "number", "exclusiveMinimum": 0},
            "threshold": {"type": "integer", "minimum": 0},
            "start": {"enum": ["beginning", "end"]},
            "stream": {"type": "boolean"},
        },
    }

    @classmethod
    def validate_params(cls, params):
        errors = regex_errors("pattern", params.get("pattern"))
        path = params.get("path")
        if isinstance(path, str) and not os.path.isabs(path):
            errors["path"] = ["Use an absolute path."]
        elif isinstance(path, str) and os.path.exists(path) and not os.path.isfile(path):
            errors["path"] = ["Not a regular file (a directory, pipe or device cannot be scanned)."]
        elif isinstance(path, str) and (roots := settings.HEALTH_LOG_ROOTS):
            # Optional allowlist: a spec author may only read logs under these folders.
            real = os.path.realpath(path)
            if not any(real == root or real.startswith(root.rstrip("/") + "/")
                       for root in map(os.path.realpath, roots)):
                errors["path"] = [f"Log files must be under one of: {', '.join(roots)}."]
        return errors

    def run(self) -> CheckOutcome:
        p = self.params
        path, window, threshold = p["path"], float(p.get("window_s", 300)), int(p.get("threshold", 0))
        state = dict(self.ctx.state)
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return CheckOutcome.error(f"log file not found: {path}")
        if not S_ISREG(stat.st_mode):
            # Opening a pipe would block this thread until a writer comes, long after the timeout.
            return CheckOutcome.error(f"not a regular file: {path}")
        regex = re.compile(p["pattern"])
        to_close: list[IO[bytes]] = []
        try:
            if p.get("stream"):
                stream = STREAMS.open(self.ctx.check_id, path, lease_token=self.ctx.lease_token)
                held = STREAMS.follow(stream)  # the file the stream had open, if it was rotated away
                if held is not None:
                    to_close.append(held[0])
                handle = stream.handle
            else:
                held = None
                handle = open(path, "rb")  # noqa: SIM115 - closed below
                to_close.append(handle)
            current = os.fstat(handle.fileno())  # the file actually read, should it rotate again meanwhile
            matches, note = 0, ""
            offset, inode, head = state.get("offset"), state.get("inode"), state.get("head")
            rotated: object = False  # the rotated file holding our unread lines; None: not found
            if offset is None:
                offset = 0 if p.get("start", "end") == "beginning" else current.st_size
            elif inode not in (None, current.st_ino):
                # Renamed away: lines written to the old file after the last run are still there.
                rotated = held[0] if held is not None and held[1] == inode else _renamed_file(
                    path, inode=inode, current_inode=current.st_ino)
            elif current.st_size < offset or (head is not None and _head(handle, head[0]) != head[1]):
                # Truncated in place (copytruncate): the lines after our offset went to the copy.
                rotated = _copied_file(path, offset=offset, head=head, current_inode=current.st_ino)
            if rotated is not False:
                if rotated is None:
                    note = MISSED
                else:
                    to_close.append(rotated)
                    matches += _scan(rotated, offset, regex, finished=True)[0]
                offset, head = 0, None  # the live file is new: read it from its start
            found, consumed = _scan(handle, offset, regex, limit=MAX_BYTES_PER_RUN)
            matches += found
            offset += consumed
            if head is None or head[0] < min(offset, HEAD_BYTES):
                length = min(offset, HEAD_BYTES)
                head = [length, _head(handle, length)]
        finally:
            for opened in to_close:
                opened.close()
        now = time.time()
        hits = [[ts, n] for ts, n in state.get("hits", []) if now - ts <= window]
        if matches:
            hits.append([now, matches])
        total = sum(n for _, n in hits)
        new_state = {"offset": offset, "inode": current.st_ino, "head": head, "hits": hits}
        summary = f"{total} match(es) of {p['pattern']!r} in the last {window:g}s (threshold {threshold})"
        if note:
            summary = f"{summary}; {note}"
        if total > threshold:
            return CheckOutcome.failure(summary, state=new_state)
        return CheckOutcome.success(summary, state=new_state)
