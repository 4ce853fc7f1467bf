"""Read queries of the health app: what a check's status is now (the stale rule), overall status per
spec and for the system, the gate, the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, DurationField, ExpressionWrapper, F, Prefetch, Q
from django.utils import timezone

from apps.core.errors import NotFound
from apps.health.models import (
    FAILING_STATUSES,
    CheckResult,
    CheckStatus,
    HealthCheck,
    HealthSpec,
    OverallStatus,
)

# A check whose latest result is older than this many intervals (plus its timeout) has missed
# runs: a stopped runner or a paused spec. Its old result says nothing about now, so every surface
# (gate, status API, dashboard, /metrics) shows it as `stale`, and a stale check is never "ok".
STALE_AFTER_INTERVALS = 3
STALE = "stale"
PENDING = OverallStatus.PENDING.value
# Every state a check can be shown in, and a spec or the system rolled up to.
CHECK_STATES = (*CheckStatus.values, PENDING, STALE)
ROLLUP_STATES = (*OverallStatus.values, STALE)


def check_status(*, last_status: str, last_run_at: datetime | None, interval_s: float, timeout_s: float,
                 now: datetime) -> str:
    """The one rule of what a check's status is now: `stale` when its latest result is past the
    stale limit (whatever that result was), `pending` before its first counted result (or while
    its latest one is in grace), else the latest result's status."""
    limit = timedelta(seconds=STALE_AFTER_INTERVALS * interval_s + timeout_s)
    if last_run_at is not None and now - last_run_at > limit:
        return STALE
    return last_status or PENDING


def health_check_status(check: HealthCheck, *, now: datetime | None = None) -> str:
    return check_status(last_status=check.last_status, last_run_at=check.last_run_at,
                        interval_s=check.interval_s, timeout_s=check.timeout_s, now=now or timezone.now())


def health_check_age_message(*, last_run_at: datetime, interval_s: float, now: datetime) -> str:
    age = (now - last_run_at).total_seconds()
    return f"last result is {age:.0f} s old; the check runs every {interval_s:g} s"


def overall_status(check_statuses) -> str:
    """A spec's roll-up: failure if any check failed; stale if any check's result is stale; pending
    if none completed; success otherwise. "" and "pending" both mean no counted result yet."""
    statuses = [s for s in check_statuses if s != PENDING]
    if any(s in FAILING_STATUSES for s in statuses):
        return OverallStatus.FAILURE.value
    if STALE in statuses:
        return STALE
    if not any(statuses):
        return PENDING
    return OverallStatus.SUCCESS.value


def system_status(spec_statuses) -> str:
    """The roll-up over enabled specs: failure if any failed, stale if any is stale, pending if
    none has a result yet."""
    statuses = list(spec_statuses)
    if OverallStatus.FAILURE in statuses:
        return OverallStatus.FAILURE.value
    if STALE in statuses:
        return STALE
    if all(s == PENDING for s in statuses):
        return PENDING
    return OverallStatus.SUCCESS.value


def health_spec_rollup_annotations(*, now: datetime | None = None) -> dict[str, Count]:
    """Annotations of a spec queryset from which `health_spec_status_from_counts` gives each spec's
    status within the same query (the admin changelist): `check_status`'s stale rule in SQL."""
    now = now or timezone.now()
    limit = ExpressionWrapper(
        (STALE_AFTER_INTERVALS * F("checks__interval_s") + F("checks__timeout_s")) * timedelta(seconds=1),
        output_field=DurationField())
    stale = Q(checks__last_run_at__lt=now - limit)
    return {
        "n_checks": Count("checks"),
        "n_failing": Count("checks", filter=Q(checks__last_status__in=FAILING_STATUSES) & ~stale),
        "n_stale": Count("checks", filter=stale),
        "n_completed": Count("checks", filter=~Q(checks__last_status="")),
    }


def health_spec_status_from_counts(spec: HealthSpec) -> str:
    """`overall_status` of a spec annotated with `health_spec_rollup_annotations`."""
    if spec.n_failing:
        return OverallStatus.FAILURE.value
    if spec.n_stale:
        return STALE
    return OverallStatus.SUCCESS.value if spec.n_completed else PENDING


def health_spec_status(spec: HealthSpec, *, now: datetime | None = None) -> str:
    """A spec's overall status from its checks (prefetched or not)."""
    now = now or timezone.now()
    return overall_status(health_check_status(c, now=now) for c in spec.checks.all())


def health_spec_overview(*, now: datetime | None = None) -> dict[str, tuple[bool, str]]:
    """{spec name: (enabled, overall status)} for every spec, in one query."""
    now = now or timezone.now()
    checks: dict[str, tuple[bool, list[str]]] = {}
    rows = HealthSpec.objects.order_by("name").values_list(
        "name", "enabled", "checks__last_status", "checks__last_run_at", "checks__interval_s",
        "checks__timeout_s")
    for name, enabled, last_status, last_run_at, interval_s, timeout_s in rows:
        statuses = checks.setdefault(name, (enabled, []))[1]
        if last_status is not None:  # a spec without checks joins to one NULL row
            statuses.append(check_status(last_status=last_status, last_run_at=last_run_at,
                                         interval_s=interval_s, timeout_s=timeout_s, now=now))
    return {name: (enabled, overall_status(statuses)) for name, (enabled, statuses) in checks.items()}


def health_spec_statuses() -> dict[str, str]:
    return {name: status for name, (_, status) in health_spec_overview().items()}


def health_system_status(overview: dict[str, tuple[bool, str]] | None = None) -> str:
    overview = health_spec_overview() if overview is None else overview
    return system_status(status for enabled, status in overview.values() if enabled)


@dataclass
class Gate:
    spec: str
    status: str
    failing: list[dict]


def health_spec_gate(*, name: str) -> Gate:
    """Success only on fresh results: failing and stale checks are listed, and hold the gate shut."""
    spec = HealthSpec.objects.filter(name=name).first()
    if spec is None:
        raise NotFound(f"No health spec named {name!r}.")
    checks = list(spec.checks.order_by("name").values(
        "name", "type", "last_status", "last_run_at", "interval_s", "timeout_s"))
    now = timezone.now()
    statuses = {c["name"]: check_status(last_status=c["last_status"], last_run_at=c["last_run_at"],
                                        interval_s=c["interval_s"], timeout_s=c["timeout_s"], now=now)
                for c in checks}
    failing, latest = [], {}
    if any(s in FAILING_STATUSES for s in statuses.values()):
        for result in (CheckResult.objects.filter(health_check__spec=spec)
                       .order_by("health_check_id", "-created_at", "-id")
                       .distinct("health_check_id").values("health_check__name", "message")):
            latest[result["health_check__name"]] = result["message"]
    for c in checks:
        status = statuses[c["name"]]
        if status == STALE:
            message = health_check_age_message(last_run_at=c["last_run_at"], interval_s=c["interval_s"],
                                               now=now)
        elif status in FAILING_STATUSES:
            message = latest.get(c["name"], "")
        else:
            continue
        failing.append({"name": c["name"], "type": c["type"], "status": status, "message": message,
                        "at": c["last_run_at"]})
    return Gate(spec=spec.name, status=overall_status(statuses.values()), failing=failing)


def health_spec_list():
    """Specs with their checks (two queries); the serializer derives each spec's overall status."""
    return HealthSpec.objects.order_by("name").prefetch_related(
        Prefetch("checks", queryset=HealthCheck.objects.order_by("name")))


def health_spec_get(*, name: str) -> HealthSpec:
    spec = health_spec_list().filter(name=name).first()
    if spec is None:
        raise NotFound(f"No health spec named {name!r}.")
    return spec


def sparkline_points(values: list[float], *, width: int = 80, height: int = 20) -> str:
    """SVG polyline points for a small trend of durations, oldest first."""
    if not values:
        return ""
    top = max(values) or 1.0
    step = width / max(len(values) - 1, 1)
    return " ".join(f"{i * step:.1f},{height - (v / top) * (height - 2) - 1:.1f}"
                    for i, v in enumerate(values))


def health_dashboard() -> dict:
    """Every spec with its checks, their last results and a trend; three queries whatever the size."""
    specs = list(HealthSpec.objects.order_by("name").prefetch_related(
        Prefetch("checks", queryset=HealthCheck.objects.order_by("name").prefetch_related(
            Prefetch("results", queryset=CheckResult.objects.order_by("-created_at", "-id"))))))
    now = timezone.now()
    rows = []
    for spec in specs:
        checks = []
        for check in spec.checks.all():
            results = list(check.results.all())
            status = health_check_status(check, now=now)
            checks.append({
                "check": check,
                "status": status,
                "stale_note": health_check_age_message(last_run_at=check.last_run_at,
                                                       interval_s=check.interval_s, now=now)
                if status == STALE else "",
                "results": results,
                "trend": sparkline_points([r.duration_ms for r in reversed(results)]),
            })
        status = overall_status(c["status"] for c in checks)
        rows.append({"spec": spec, "status": status, "checks": checks})
    enabled = [row["status"] for row in rows if row["spec"].enabled]
    return {"specs": rows, "system_status": system_status(enabled)}
