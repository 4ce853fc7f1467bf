"""Read queries of the health app: overall status per spec and for the system, the gate, the dashboard."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Prefetch
from django.utils import timezone

from apps.core.errors import NotFound
from apps.health.models import FAILING_STATUSES, CheckResult, HealthCheck, HealthSpec, OverallStatus


def overall_status(check_statuses) -> str:
    """failure if any check's latest result failed; pending if none completed; success otherwise."""
    statuses = list(check_statuses)
    if any(s in FAILING_STATUSES for s in statuses):
        return OverallStatus.FAILURE.value
    if not any(statuses):
        return OverallStatus.PENDING.value
    return OverallStatus.SUCCESS.value


def system_status(spec_statuses) -> str:
    """The roll-up over enabled specs: failure if any failed, pending if none has a result yet."""
    statuses = list(spec_statuses)
    if OverallStatus.FAILURE in statuses:
        return OverallStatus.FAILURE.value
    if all(s == OverallStatus.PENDING for s in statuses):
        return OverallStatus.PENDING.value
    return OverallStatus.SUCCESS.value


def health_spec_overview() -> dict[str, tuple[bool, str]]:
    """{spec name: (enabled, overall status)} for every spec, in one query."""
    checks: dict[str, tuple[bool, list[str]]] = {}
    rows = HealthSpec.objects.order_by("name").values_list("name", "enabled", "checks__last_status")
    for name, enabled, status in rows:
        statuses = checks.setdefault(name, (enabled, []))[1]
        if status is not None:  # a spec without checks joins to one NULL row
            statuses.append(status)
    return {name: (enabled, overall_status(statuses)) for name, (enabled, statuses) in checks.items()}


def health_spec_statuses() -> dict[str, str]:
    return {name: status for name, (_, status) in health_spec_overview().items()}


def health_system_status(overview: dict[str, tuple[bool, str]] | None = None) -> str:
    overview = health_spec_overview() if overview is None else overview
    return system_status(status for enabled, status in overview.values() if enabled)


# The gate passes only on fresh results: a check whose latest result is older than this many
# intervals (plus its timeout) has missed runs, so a stopped runner or a disabled spec cannot
# keep a deploy pipeline green on results from before it stopped.
STALE_AFTER_INTERVALS = 3


@dataclass
class Gate:
    spec: str
    status: str
    failing: list[dict]


def health_spec_gate(*, name: str) -> Gate:
    spec = HealthSpec.objects.filter(name=name).first()
    if spec is None:
        raise NotFound(f"No health spec named {name!r}.")
    checks = list(spec.checks.order_by("name").values(
        "name", "type", "last_status", "last_run_at", "interval_s", "timeout_s"))
    failing = []
    if checks:
        latest = {}
        for result in (CheckResult.objects.filter(health_check__spec=spec)
                       .order_by("health_check_id", "-created_at", "-id")
                       .distinct("health_check_id").values("health_check__name", "message")):
            latest[result["health_check__name"]] = result["message"]
        failing = [
            {"name": c["name"], "type": c["type"], "status": c["last_status"],
             "message": latest.get(c["name"], ""), "at": c["last_run_at"]}
            for c in checks if c["last_status"] in FAILING_STATUSES
        ]
    status = overall_status(c["last_status"] for c in checks)
    if status == OverallStatus.SUCCESS:
        now = timezone.now()
        for c in checks:
            bound = timedelta(seconds=STALE_AFTER_INTERVALS * c["interval_s"] + c["timeout_s"])
            if c["last_run_at"] is not None and now - c["last_run_at"] > bound:
                age = (now - c["last_run_at"]).total_seconds()
                failing.append({
                    "name": c["name"], "type": c["type"], "status": "stale", "at": c["last_run_at"],
                    "message": f"last result is {age:.0f} s old; the check runs every {c['interval_s']:g} s",
                })
        if failing:
            status = "stale"
    return Gate(spec=spec.name, status=status, failing=failing)


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
    rows = []
    for spec in specs:
        checks = []
        for check in spec.checks.all():
            results = list(check.results.all())
            checks.append({
                "check": check,
                "status": check.last_status or "pending",
                "results": results,
                "trend": sparkline_points([r.duration_ms for r in reversed(results)]),
            })
        status = overall_status(c["check"].last_status for c in checks)
        rows.append({"spec": spec, "status": status, "checks": checks})
    enabled = [row["status"] for row in rows if row["spec"].enabled]
    return {"specs": rows, "system_status": system_status(enabled)}
