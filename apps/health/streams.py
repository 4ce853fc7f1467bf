"""Open log streams of this process, keyed by check id, so a streaming log-grep check keeps its
file handle between runs and nothing leaks.

A stream is closed when its check is deleted (by the service that deletes it, and by the
runner's sweep in every other process), when this process fails to get or loses the check's
lease (another runner owns the check now), and when it sits unused for too long. When its file is
rotated away, the stream hands the old handle to the check (`follow`), which reads what was
written to it before the rotation, even if the rotated file is gone or compressed by then.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import IO


@dataclass
class Stream:
    check_id: int
    path: str
    handle: IO[bytes]
    inode: int
    lease_token: str
    last_used: float


class StreamRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: dict[int, Stream] = {}

    def open(self, check_id: int, path: str, *, lease_token: str) -> Stream:
        """The open stream of a check, (re)opened if it is new, for another path, or closed. It may
        still hold a file rotated away since: see `follow`."""
        with self._lock:
            stream = self._streams.get(check_id)
            if stream is not None and (stream.path != path or stream.handle.closed):
                stream.handle.close()
                stream = None
            if stream is None:
                handle = open(path, "rb")  # noqa: SIM115 - kept open on purpose, closed by this registry
                stream = Stream(check_id, path, handle, os.fstat(handle.fileno()).st_ino, lease_token, 0.0)
                self._streams[check_id] = stream
            stream.lease_token = lease_token
            stream.last_used = time.monotonic()
            return stream

    def follow(self, stream: Stream) -> tuple[IO[bytes], int] | None:
        """Point `stream` at the file now at its path when that is another file than the one it
        holds (rotated by rename). Returns the handle and inode it held, for the caller to read
        the rest of the old file and close it; None when the file was not rotated."""
        with self._lock:
            try:
                if os.stat(stream.path).st_ino == stream.inode:
                    return None
                handle = open(stream.path, "rb")  # noqa: SIM115 - kept open on purpose, closed by this registry
            except FileNotFoundError:
                return None  # between rotation and re-creation: keep reading the old file
            inode = os.fstat(handle.fileno()).st_ino
            previous = (stream.handle, stream.inode)
            stream.handle, stream.inode = handle, inode
            return previous

    def close(self, check_id: int) -> bool:
        with self._lock:
            stream = self._streams.pop(check_id, None)
        if stream is None:
            return False
        stream.handle.close()
        return True

    def close_many(self, check_ids) -> int:
        return sum(self.close(check_id) for check_id in list(check_ids))

    def close_except(self, alive_ids, *, idle_s: float | None = None) -> int:
        """Close streams of checks not in `alive_ids` (deleted or disabled) and, with `idle_s`, idle ones."""
        alive = set(alive_ids)
        now = time.monotonic()
        with self._lock:
            doomed = [cid for cid, s in self._streams.items()
                      if cid not in alive or (idle_s is not None and now - s.last_used > idle_s)]
        return self.close_many(doomed)

    def close_all(self) -> int:
        return self.close_many(list(self._streams))

    def token_of(self, check_id: int) -> str | None:
        stream = self._streams.get(check_id)
        return stream.lease_token if stream else None

    def __contains__(self, check_id: int) -> bool:
        return check_id in self._streams

    def __len__(self) -> int:
        return len(self._streams)


STREAMS = StreamRegistry()
