"""Race tests: one function called from several threads released at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from django.db import connections

T = TypeVar("T")


def run_at_once(fn: Callable[[], T], n: int, *, timeout: float = 30.0) -> list[T]:
    """Call `fn()` from `n` threads that start together; return their `n` results (any order).

    Each thread closes its own database connections. The first exception a thread raised is
    raised here, so a lost race fails the test with the real error.
    """
    barrier = threading.Barrier(n)
    results: list[T] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout)
            results.append(fn())
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    if errors:
        raise errors[0]
    assert not any(t.is_alive() for t in threads), f"a thread ran longer than {timeout} s"
    return results
