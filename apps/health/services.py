"""Write use cases of the health app: run checks (claims, leases, a thread pool with per-check
timeouts, results written in bulk). Spec use cases live in apps.health.spec_services and are
re-exported here, the app's one entry for writes.
"""

from __future__ import annotations

import contextvars
import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial

from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from apps.health import leases
from apps.health.checks import REGISTRY, CheckOutcome
from apps.health.checks.base import CheckContext
from apps.health.models import RESULTS_KEPT, CheckResult, CheckStatus, HealthCheck
from apps.health.spec_services import (  # noqa: F401
    FileReport,
    health_spec_apply,
    health_spec_delete,
    health_spec_ensure_editable,
    health_spec_set_enabled,
    health_spec_validate,
    health_specs_sync_dir,
)
from apps.health.streams import STREAMS

logger = logging.getLogger(__name__)

# A lease is taken for the longest timeout of its chunk (the runner confirms every lease of a chunk
# only once the whole chunk is done) plus this margin; a runner that dies blocks its checks no longer.
LEASE_RUN_MARGIN_MS = 5_000
# Confirming a lease extends it by this much: time to write the results.
LEASE_WRITE_MS = 15_000


# Runner ----------------------------------------------------------------------------------------
#
# A run claims checks before it runs them, in one transaction: it locks the candidate rows (due
# ones with SKIP LOCKED, so concurrent runners split the due set), leases each in Redis (the lease
# keeps one run of a check at a time, "run now" included), and for the leased rows bumps `claim`
# and, for a scheduled run, advances `next_run_at` on the check's own grid. A check leased
# elsewhere keeps its due time and is claimed by the first tick after that lease ends. A run claims
# at most HEALTH_MAX_THREADS checks at once (all of them run concurrently), so a lease never waits
# for an earlier chunk to finish; the result is written only if the claim is still the check's
# latest, and never touches the schedule.

@dataclass
class RunReport:
    ran: int = 0
    leased_elsewhere: int = 0
    discarded: int = 0
    wall_s: float = 0.0
    results: list[CheckResult] = field(default_factory=list)

    def add(self, part: RunReport) -> None:
        self.ran += part.ran
        self.leased_elsewhere += part.leased_elsewhere
        self.discarded += part.discarded
        self.results.extend(part.results)


@dataclass
class CheckExecution:
    """What one run of a check produced, before it is written."""

    outcome: CheckOutcome
    duration_ms: float


@dataclass
class Claim:
    """Checks a runner claimed (and holds the leases of), and those it found leased by another."""

    checks: list[HealthCheck] = field(default_factory=list)
    tokens: dict[int, str] = field(default_factory=dict)
    leased_elsewhere: list[int] = field(default_factory=list)


# The first point of the check's grid (its previous due time + k * interval) after `now`: a late
# tick does not shift later runs, and a check far behind (a runner was down) runs once, not once
# per missed interval.
CLAIM_SQL = """
UPDATE health_healthcheck AS c
SET claim = c.claim + 1,
    next_run_at = CASE WHEN %(advance)s THEN c.next_run_at + make_interval(secs => c.interval_s * (
        floor(extract(epoch FROM %(now)s - c.next_run_at)::float8 / c.interval_s) + 1))
        ELSE c.next_run_at END
WHERE c.id = ANY(%(ids)s)
RETURNING c.id, c.claim, c.next_run_at
"""


def _checks_claim(candidates, *, now: datetime, advance: bool) -> tuple[Claim, list[int]]:
    """Lock `candidates` (a select_for_update queryset), lease them and claim the leased ones, in one
    transaction. Returns the claim and the ids of every candidate seen."""
    tokens: dict[int, str] = {}
    try:
        with transaction.atomic():
            checks = list(candidates)
            if not checks:
                return Claim(), []
            ttl_ms = max(c.timeout_s for c in checks) * 1000 + LEASE_RUN_MARGIN_MS
            tokens = leases.leases_acquire({c.id: ttl_ms for c in checks})
            claimed = [c for c in checks if c.id in tokens]
            if claimed:
                with connection.cursor() as cursor:
                    cursor.execute(CLAIM_SQL, {"advance": advance, "now": now,
                                               "ids": [c.id for c in claimed]})
                    rows = {row[0]: row[1:] for row in cursor.fetchall()}
                for check in claimed:
                    check.claim, check.next_run_at = rows[check.id]
    except BaseException:
        leases.leases_release(tokens)  # nothing was claimed: the next tick may take them at once
        raise
    elsewhere = [c.id for c in checks if c.id not in tokens]
    return Claim(claimed, tokens, elsewhere), [c.id for c in checks]


def _host_local(check_type: str) -> bool:
    found = REGISTRY.get(check_type)
    return bool(found and found.host_local)


def _state_on_host(check_type: str, state: dict | None, host: str) -> dict:
    """The state a run on `host` starts from: a host-local check keeps one per host, under "hosts"."""
    state = state or {}
    return state.get("hosts", {}).get(host, {}) if _host_local(check_type) else state


def _state_with_host(check_type: str, state: dict | None, host: str, new: dict) -> dict:
    if not _host_local(check_type):
        return new
    state = state or {}
    return {**state, "hosts": {**state.get("hosts", {}), host: new}}


def _run_one(check: HealthCheck, token: str, host: str) -> CheckExecution:
    started = time.perf_counter()
    ctx = CheckContext(check_id=check.id, name=check.name, params=check.params, timeout_s=check.timeout_s,
                       grace_period_s=check.grace_period_s, lease_token=token, host=host,
                       state=_state_on_host(check.type, check.state, host))
    try:
        check_type = REGISTRY.get(check.type)
        if check_type is None:
            outcome = CheckOutcome.error(f"unknown check type {check.type!r}")
        else:
            outcome = check_type(ctx).run()
    except Exception as exc:  # a check's own crash is its result, never the runner's
        outcome = CheckOutcome.error(f"{type(exc).__name__}: {exc}"[:2000])
    finally:
        # This thread's own DB connections (a resource or database check); the pool thread may die.
        connections.close_all()
    return CheckExecution(outcome, (time.perf_counter() - started) * 1000)


def _execute(checks: list[HealthCheck],
             tokens: dict[int, str]) -> tuple[dict[int, CheckExecution], dict[int, Future]]:
    """Run checks concurrently; a check still running at its timeout is recorded as a timeout and
    not waited for (its thread finishes on its own). Returns the executions and the futures."""
    if not checks:
        return {}, {}
    host = settings.CASEHUB_HOST_NAME
    pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="health-check")
    started = time.monotonic()
    # Each check runs in a copy of this context: a sandbox run's checks stay in the sandbox.
    futures = {c.id: pool.submit(contextvars.copy_context().run, _run_one, c, tokens[c.id], host)
               for c in checks}
    results: dict[int, CheckExecution] = {}
    try:
        for check in sorted(checks, key=lambda c: c.timeout_s):
            remaining = started + check.timeout_s - time.monotonic()
            try:
                results[check.id] = futures[check.id].result(timeout=max(0.0, remaining))
            except FutureTimeout:
                futures[check.id].cancel()
                results[check.id] = CheckExecution(
                    CheckOutcome(CheckStatus.TIMEOUT.value, f"did not finish within {check.timeout_s:g}s"),
                    check.timeout_s * 1000)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results, futures


def _claim_run(claim: Claim, *, now: datetime) -> RunReport:
    """Run the claimed checks concurrently, confirm their leases and write the results."""
    report = RunReport(leased_elsewhere=len(claim.leased_elsewhere))
    STREAMS.close_many(claim.leased_elsewhere)  # another runner owns these checks now
    if not claim.checks:
        return report
    tokens = claim.tokens
    executions, futures = _execute(claim.checks, tokens)
    timed_out = {cid for cid, ex in executions.items() if ex.outcome.status == CheckStatus.TIMEOUT}
    held = leases.leases_confirm(tokens, ttl_ms=LEASE_WRITE_MS)
    lost = [cid for cid, ok in held.items() if not ok]
    STREAMS.close_many(lost)  # our lease expired or was taken: someone else may be reading this log
    report.discarded += len(lost)
    kept = [c for c in claim.checks if held.get(c.id)]
    try:
        report.results = health_check_results_write(checks=kept, executions=executions, now=now)
    finally:
        leases.leases_release({cid: tokens[cid] for cid in tokens if held.get(cid) and cid not in timed_out})
        # A timed-out check may still be running in its thread: its lease is freed when that thread
        # ends (at once if it already has), so no second run starts while it runs, and the check is
        # not blocked longer than needed. A thread that hangs past LEASE_WRITE_MS loses it by expiry.
        for cid in timed_out:
            if held.get(cid):
                futures[cid].add_done_callback(partial(_lease_release_quietly, cid, tokens[cid]))
    report.ran = len(report.results)
    report.discarded += len(kept) - len(report.results)
    return report


def _lease_release_quietly(check_id: int, token: str, _future: Future) -> None:
    try:
        leases.leases_release({check_id: token})
    except Exception:  # a Redis blip here only delays the check until the lease expires
        logger.warning("could not release the lease of health check %s", check_id, exc_info=True)


PRUNE_SQL = f"""
DELETE FROM health_checkresult WHERE id IN (
    SELECT id FROM (
        SELECT id, row_number() OVER (PARTITION BY health_check_id ORDER BY created_at DESC, id DESC) AS n
        FROM health_checkresult WHERE health_check_id = ANY(%s)
    ) ranked WHERE n > {RESULTS_KEPT}
)
"""


# One statement for every check of the run (Django's bulk_update builds a CASE per field: 5x slower).
# The schedule is the claim's alone: a result never moves `next_run_at`.
UPDATE_CHECKS_SQL = """
UPDATE health_healthcheck AS c
SET last_status = v.status, last_duration_ms = v.duration_ms, last_run_at = %s, state = v.state::jsonb
FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::text[]) AS v(id, status, duration_ms, state)
WHERE c.id = v.id
"""


@transaction.atomic
def health_check_results_write(*, checks: list[HealthCheck], executions: dict[int, CheckExecution],
                               now: datetime) -> list[CheckResult]:
    """The runner's write step: insert the results, prune to the last RESULTS_KEPT per check and
    update the checks, in one transaction, with the checks' rows locked in id order (as edits lock
    them). Skipped (their result is stale): checks deleted or redefined while they ran, and checks
    claimed again since (compare-and-set on `claim`)."""
    if not checks:
        return []
    host = settings.CASEHUB_HOST_NAME
    current = {
        row[0]: row[1:]
        for row in HealthCheck.objects.select_for_update().filter(id__in=[c.id for c in checks])
        .order_by("id").values_list("id", "type", "params", "claim", "state")
    }
    finished = timezone.now()
    results, updated = [], []
    for check in checks:
        row = current.get(check.id)
        if row is None or row[:3] != (check.type, check.params, check.claim):
            continue
        execution = executions[check.id]
        outcome = execution.outcome
        in_grace = outcome.status != CheckStatus.SUCCESS and (
            outcome.in_grace or (now - check.grace_started_at).total_seconds() < check.grace_period_s)
        results.append(CheckResult(health_check_id=check.id, status=outcome.status,
                                   duration_ms=execution.duration_ms, message=outcome.message[:2000],
                                   in_grace=in_grace, created_at=finished))
        check.last_status = "" if in_grace else outcome.status
        check.last_duration_ms = execution.duration_ms
        check.last_run_at = finished
        check.state = (row[3] if outcome.state is None
                       else _state_with_host(check.type, row[3], host, outcome.state))
        updated.append(check)
    if not results:
        return []
    CheckResult.objects.bulk_create(results)
    with connection.cursor() as cursor:
        cursor.execute(PRUNE_SQL, [[c.id for c in updated]])
        cursor.execute(UPDATE_CHECKS_SQL, [
            finished, [c.id for c in updated], [c.last_status for c in updated],
            [c.last_duration_ms for c in updated], [json.dumps(c.state) for c in updated],
        ])
    return results


def health_checks_run_due(*, now: datetime | None = None) -> RunReport:
    """Claim and run the due checks of enabled specs that this host may run (the beat task calls
    this every tick): up to HEALTH_MAX_THREADS at a time, at most HEALTH_DUE_BATCH in all. `now`
    fixes the clock (tests); by default each claim reads it afresh."""
    report = RunReport()
    t0 = time.perf_counter()
    hosts = ["", settings.CASEHUB_HOST_NAME]
    # Streams of checks deleted, paused or moved to another host by another process are closed
    # here, in this one.
    STREAMS.close_except(
        HealthCheck.objects.filter(spec__enabled=True, type="log_grep", host__in=hosts)
        .values_list("id", flat=True),
        idle_s=settings.HEALTH_STREAM_IDLE_S,
    )
    seen: list[int] = []  # checks leased elsewhere stay due: not offered again in this run
    while len(seen) < settings.HEALTH_DUE_BATCH:
        at = now or timezone.now()
        size = min(settings.HEALTH_MAX_THREADS, settings.HEALTH_DUE_BATCH - len(seen))
        due = (HealthCheck.objects.select_for_update(skip_locked=True, of=("self",))
               .filter(spec__enabled=True, next_run_at__lte=at, host__in=hosts).exclude(id__in=seen)
               .order_by("next_run_at", "id")[:size])
        claim, candidates = _checks_claim(due, now=at, advance=True)
        seen.extend(candidates)
        report.add(_claim_run(claim, now=at))
        if len(candidates) < size:
            break
    report.wall_s = time.perf_counter() - t0
    return report


def health_spec_run(*, spec_id: int) -> RunReport:
    """Run every check of one spec now, whatever their schedule ("run now" in admin, benchmarks);
    the schedule stays as it is. Checks pinned to another host are left to that host's runner."""
    report = RunReport()
    t0 = time.perf_counter()
    ids = list(HealthCheck.objects.filter(spec_id=spec_id, host__in=["", settings.CASEHUB_HOST_NAME])
               .order_by("id").values_list("id", flat=True))
    size = settings.HEALTH_MAX_THREADS
    for i in range(0, len(ids), size):
        now = timezone.now()
        # Waits for (does not skip) a row another claim holds for a moment: then its lease decides.
        rows = (HealthCheck.objects.select_for_update(of=("self",)).filter(id__in=ids[i:i + size])
                .order_by("id"))
        claim, _ = _checks_claim(rows, now=now, advance=False)
        report.add(_claim_run(claim, now=now))
    report.wall_s = time.perf_counter() - t0
    return report
