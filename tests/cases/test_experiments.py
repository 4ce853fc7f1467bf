"""Experiment statistics against published values: Wilson intervals and Newcombe's difference
intervals from Newcombe (1998, Statistics in Medicine 17: 857-872 and 873-890), z-tests by hand."""

import math

import pytest

from apps.cases.experiments import (
    difference_interval,
    experiments_impact,
    group_rate,
    two_proportion_z_test,
    wilson_interval,
)


def rounded(pair, places=4):
    return tuple(round(v, places) for v in pair)


@pytest.mark.parametrize(("x", "n", "expected"), [
    # Newcombe 1998a, table I (score method without continuity correction).
    (81, 263, (0.2553, 0.3662)),
    (15, 148, (0.0624, 0.1605)),
    (0, 20, (0.0, 0.1611)),
    (1, 29, (0.0061, 0.1718)),
])
def test_wilson_interval_matches_published_values(x, n, expected):
    assert rounded(wilson_interval(x, n)) == expected


def test_wilson_interval_stays_within_zero_and_one_and_needs_data():
    # 29/29: centre (1 + z²/58)/(1 + z²/29), upper bound exactly 1 (clamped rounding dust).
    low, high = wilson_interval(29, 29)
    assert high == 1.0 and round(low, 4) == 0.8830
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


@pytest.mark.parametrize(("counts", "expected"), [
    # Newcombe 1998b, table II, method 10 (hybrid score, no continuity correction).
    ((56, 70, 48, 80), (0.0524, 0.3339)),
    ((9, 10, 3, 10), (0.1705, 0.8090)),
    ((6, 7, 2, 7), (0.0582, 0.8062)),
    ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ((0, 10, 0, 20), (-0.1611, 0.2775)),
    ((10, 10, 0, 20), (0.6791, 1.0)),
])
def test_difference_interval_matches_newcombe(counts, expected):
    assert rounded(difference_interval(*counts)) == expected


def test_z_test_by_hand():
    # 9/10 vs 3/10: pooled 12/20 = 0.6; se = sqrt(0.6 · 0.4 · (1/10 + 1/10)) = sqrt(0.048) = 0.219089;
    # z = (0.9 - 0.3) / 0.219089 = 2.7386; two-sided p = erfc(2.7386 / √2) = 0.00617.
    z, p = two_proportion_z_test(9, 10, 3, 10)
    assert round(z, 4) == 2.7386 and round(p, 5) == 0.00617
    # 56/70 vs 48/80: pooled 104/150; se = 0.075467; z = 0.2 / 0.075467 = 2.6502; p = 0.00805.
    z, p = two_proportion_z_test(56, 70, 48, 80)
    assert round(z, 4) == 2.6502 and round(p, 5) == 0.00805
    # Symmetric: swapping the groups flips z, keeps p.
    z2, p2 = two_proportion_z_test(48, 80, 56, 70)
    assert math.isclose(z2, -z) and math.isclose(p2, p)


def test_z_test_degenerate_groups():
    assert two_proportion_z_test(0, 10, 0, 20) == (None, 1.0)  # nobody followed up anywhere
    assert two_proportion_z_test(10, 10, 20, 20) == (None, 1.0)
    assert two_proportion_z_test(1, 10, 0, 0) == (None, None)


def test_group_rate_of_an_empty_group_has_no_rate():
    assert group_rate(0, 0).rate is None and group_rate(0, 0).ci_low is None
    assert group_rate(3, 12).rate == 0.25


def test_experiments_impact_pairs_groups_and_judges_significance():
    rows = [
        # Outreach cut follow-ups from 48/80 to 20/70 (treatment first in the difference).
        {"experiment": "late-2026", "group": "control", "deliveries": 80, "followups": 48},
        {"experiment": "late-2026", "group": "treatment", "deliveries": 70, "followups": 20},
        # Too few deliveries to tell: 2/10 vs 3/10.
        {"experiment": "missing-items", "group": "treatment", "deliveries": 10, "followups": 2},
        {"experiment": "missing-items", "group": "control", "deliveries": 10, "followups": 3},
        # Only treatment so far; "none" rows are deliveries outside any split.
        {"experiment": "new", "group": "treatment", "deliveries": 5, "followups": 1},
        {"experiment": "new", "group": "none", "deliveries": 99, "followups": 9},
    ]
    late, missing, new = experiments_impact(rows)
    assert late.experiment == "late-2026" and late.treatment.deliveries == 70 and late.control.followups == 48
    # 20/70 - 48/80 = 0.285714 - 0.6 = -0.314286; pooled 68/150 = 0.453333,
    # se = sqrt(0.453333 · 0.546667 · (1/70 + 1/80)) = 0.081475, z = -3.8575, p = 0.000115.
    assert round(late.comparison.difference, 6) == -0.314286
    assert round(late.comparison.z, 4) == -3.8575 and late.comparison.p_value < 0.001
    assert late.comparison.significant and late.comparison.ci_high < 0
    # 2/10 vs 3/10: pooled 0.25, se = sqrt(0.25 · 0.75 · 0.2) = 0.193649, z = -0.5164, p = 0.6056.
    assert round(missing.comparison.p_value, 4) == 0.6056 and not missing.comparison.significant
    assert missing.comparison.ci_low < 0 < missing.comparison.ci_high
    assert new.control.deliveries == 0 and new.comparison.p_value is None
    assert not new.comparison.significant and new.comparison.difference is None
