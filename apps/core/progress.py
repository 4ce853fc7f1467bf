"""Progress bars for long-running management commands (tqdm on stderr)."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


class Progress:
    """Hands out bars; a command passes one to its service so the service stays UI-free."""

    def __init__(self, *, enabled: bool | None = None) -> None:
        # None: show bars only on a terminal, so logs and CI output stay clean.
        self.enabled = enabled

    def iter(self, iterable: Iterable[T], *, total: int | None = None, desc: str = "") -> Iterator[T]:
        disable = None if self.enabled is None else not self.enabled
        yield from tqdm(iterable, total=total, desc=desc, file=sys.stderr, disable=disable,
                        unit="it", dynamic_ncols=True, leave=False)

    def bar(self, *, total: int, desc: str = "", leave: bool = False) -> tqdm:
        """`leave=True` keeps the finished bar (count, time, rate) on screen above a summary."""
        disable = None if self.enabled is None else not self.enabled
        return tqdm(total=total, desc=desc, file=sys.stderr, disable=disable, dynamic_ncols=True,
                    leave=leave)


SILENT = Progress(enabled=False)
