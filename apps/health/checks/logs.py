"""Log grep: count lines matching a pattern in a log file, fail when a window holds too many.

The file offset, inode and recent match counts live in the check's state, so any runner
resumes where the last one stopped. With `stream: true` the file handle stays open between
runs in the process that ran it (see apps.health.streams).
"""

from __future__ import annotations

import os
import re
import time
from stat import S_ISREG

from django.conf import settings

from apps.health.checks.base import Check, CheckOutcome, register
from apps.health.checks.network import regex_errors
from apps.health.streams import STREAMS

MAX_BYTES_PER_RUN = 16 * 1024 * 1024  # a burst of logging is caught up over several runs


@register
class LogGrepCheck(Check):
    type_name = "log_grep"
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
        offset = state.get("offset")
        if offset is None:
            offset = 0 if p.get("start", "end") == "beginning" else stat.st_size
        if state.get("inode") not in (None, stat.st_ino) or stat.st_size < offset:
            offset = 0  # rotated or truncated: the new file is read from its start
        if p.get("stream"):
            stream = STREAMS.open(self.ctx.check_id, path, lease_token=self.ctx.lease_token)
            handle, close = stream.handle, False
        else:
            handle, close = open(path, "rb"), True  # noqa: SIM115 - closed below
        try:
            # The stored offset is the truth: another runner may have read further since we last did.
            if handle.tell() != offset:
                handle.seek(offset)
            chunk = handle.read(MAX_BYTES_PER_RUN)
            end = chunk.rfind(b"\n") + 1  # a half-written last line waits for the next run
            if end < len(chunk):
                handle.seek(offset + end)
            chunk = chunk[:end]
        finally:
            if close:
                handle.close()
        regex = re.compile(p["pattern"])
        matches = sum(1 for line in chunk.decode("utf-8", "replace").splitlines() if regex.search(line))
        now = time.time()
        hits = [[ts, n] for ts, n in state.get("hits", []) if now - ts <= window]
        if matches:
            hits.append([now, matches])
        total = sum(n for _, n in hits)
        new_state = {"offset": offset + end, "inode": stat.st_ino, "hits": hits}
        summary = f"{total} match(es) of {p['pattern']!r} in the last {window:g}s (threshold {threshold})"
        if total > threshold:
            return CheckOutcome.failure(summary, state=new_state)
        return CheckOutcome.success(summary, state=new_state)
