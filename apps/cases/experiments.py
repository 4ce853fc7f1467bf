"""Statistics of proactive-signal experiments: follow-up contact rates of treatment and control with
Wilson intervals, their difference (Newcombe's interval) and a two-proportion z-test. Pure logic.

A delivery's outcome is binary: did the customer contact support about it afterwards (see
apps.cases.selectors.experiment_impact for what counts as a follow-up contact)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile: two-sided 95%
SIGNIFICANCE = 0.05
TREATMENT, CONTROL = "treatment", "control"


@dataclass(frozen=True)
class GroupRate:
    deliveries: int
    followups: int
    rate: float | None  # None without deliveries
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class Comparison:
    """Treatment minus control: a negative difference means the outreach saved contacts."""

    difference: float | None
    ci_low: float | None
    ci_high: float | None
    z: float | None
    p_value: float | None
    significant: bool


@dataclass(frozen=True)
class ExperimentImpact:
    experiment: str
    treatment: GroupRate
    control: GroupRate
    comparison: Comparison


def wilson_interval(successes: int, n: int, *, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson score interval of a proportion: stays inside [0, 1] and is sound for small n and rates
    near 0 or 1, where the textbook p ± z·se is not. None when n is 0."""
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # Clamp rounding dust (e.g. 1.0000000000000002 at p = 1).
    return max(0.0, centre - half), min(1.0, centre + half)


def group_rate(followups: int, deliveries: int) -> GroupRate:
    interval = wilson_interval(followups, deliveries)
    if interval is None:
        return GroupRate(deliveries, followups, None, None, None)
    return GroupRate(deliveries, followups, followups / deliveries, *interval)


def difference_interval(x1: int, n1: int, x2: int, n2: int, *, z: float = Z_95) -> tuple[float, float] | None:
    """Newcombe's hybrid score interval (1998, method 10) for p1 - p2, built from each group's
    Wilson interval; None when a group is empty."""
    first, second = wilson_interval(x1, n1, z=z), wilson_interval(x2, n2, z=z)
    if first is None or second is None:
        return None
    p1, p2 = x1 / n1, x2 / n2
    (l1, u1), (l2, u2) = first, second
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)


def two_proportion_z_test(x1: int, n1: int, x2: int, n2: int) -> tuple[float | None, float | None]:
    """(z, two-sided p-value) of H0: p1 = p2, with the pooled standard error.

    When the pooled rate is 0 or 1 both groups are identical (z undefined, p = 1); with an empty
    group there is nothing to test: (None, None).
    """
    if n1 <= 0 or n2 <= 0:
        return None, None
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None, 1.0
    z = (x1 / n1 - x2 / n2) / se
    return z, math.erfc(abs(z) / math.sqrt(2))


def compare(treatment: GroupRate, control: GroupRate) -> Comparison:
    t, c = treatment, control
    interval = difference_interval(t.followups, t.deliveries, c.followups, c.deliveries)
    z, p = two_proportion_z_test(t.followups, t.deliveries, c.followups, c.deliveries)
    difference = None if t.rate is None or c.rate is None else t.rate - c.rate
    return Comparison(difference=difference, ci_low=interval[0] if interval else None,
                      ci_high=interval[1] if interval else None, z=z, p_value=p,
                      significant=p is not None and p < SIGNIFICANCE)


def experiments_impact(rows: Iterable[Mapping[str, Any]]) -> list[ExperimentImpact]:
    """Rows of (experiment, group, deliveries, followups), as the selector returns them, into one
    result per experiment; a group with no rows counts as empty. Other groups are ignored."""
    counts: dict[str, dict[str, tuple[int, int]]] = {}
    for row in rows:
        if row["group"] in (TREATMENT, CONTROL):
            counts.setdefault(row["experiment"], {})[row["group"]] = (row["followups"], row["deliveries"])
    out = []
    for name in sorted(counts):
        treatment = group_rate(*counts[name].get(TREATMENT, (0, 0)))
        control = group_rate(*counts[name].get(CONTROL, (0, 0)))
        out.append(ExperimentImpact(name, treatment, control, compare(treatment, control)))
    return out
