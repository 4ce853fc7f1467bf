"""Waiting for something to happen in another thread or process: poll with a generous deadline.

The deadline only bounds a hang: nothing is asserted about how long anything takes, so a loaded
2-core machine cannot fail a test by being slow.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], what: str = "condition", *, timeout: float = 120.0,
             interval: float = 0.05) -> T:
    """The first truthy value of `predicate()`; AssertionError naming `what` once `timeout` passes."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout:g}s waiting for {what}"
        time.sleep(interval)
    return value
