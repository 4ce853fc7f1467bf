"""The restart policy of `make run`'s supervisor: backoff, its reset, and what a crash loop is.

The supervisor itself runs for real in tests/core/test_make_run.py; these pin the arithmetic.
"""

from __future__ import annotations

import pytest

from config.supervisor import CrashLoop, RestartPolicy, Unit

POLICY = RestartPolicy(first_delay=0.5, max_delay=4.0, stable_after=30.0, limit=5, window=60.0)


def _run_for(unit: Unit, started: float, died: float) -> float:
    """One life: started at `started`, died at `died`; the delay before the next start."""
    unit.up_since = started
    return unit.schedule_restart(died)


def test_restarts_back_off_doubling_up_to_the_cap():
    unit = Unit("worker", RestartPolicy(first_delay=0.5, max_delay=4.0, limit=100))
    delays = [_run_for(unit, started=10.0 * i, died=10.0 * i + 1) for i in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert unit.restart_at == 51.0 + 4.0


def test_a_process_that_stayed_up_a_while_restarts_quickly_again():
    unit = Unit("web", POLICY)
    assert [_run_for(unit, 0.0, 1.0), _run_for(unit, 2.0, 3.0), _run_for(unit, 4.0, 5.0)] == [0.5, 1.0, 2.0]
    assert _run_for(unit, 10.0, 10.0 + POLICY.stable_after) == POLICY.first_delay


def test_too_many_restarts_within_the_window_is_a_crash_loop():
    unit = Unit("beat", RestartPolicy(first_delay=0.5, limit=3, window=60.0))
    for died in (1.0, 2.0, 3.0):
        _run_for(unit, died - 1, died)
    with pytest.raises(CrashLoop):
        _run_for(unit, 3.5, 4.0)


def test_deaths_outside_the_window_do_not_count():
    unit = Unit("beat", RestartPolicy(first_delay=0.5, stable_after=1000.0, limit=3, window=60.0))
    for died in (1.0, 2.0, 3.0):
        _run_for(unit, died - 1, died)
    # Three deaths long ago and one now: not a crash loop.
    assert _run_for(unit, 100.0, 200.0) > 0
