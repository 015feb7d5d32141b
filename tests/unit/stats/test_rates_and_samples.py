"""Rates and two independent samples (experiment reports, canary judgements, drift's rate monitors) on
synthetic data with known truth, and against scipy's and textbook reference values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from keel.stats import (
    compare_means,
    compare_rates,
    compare_tails,
    holm,
    mean_interval,
    rate_interval,
    two_proportion_z,
)


def test_wilson_interval_covers_the_true_rate_about_as_often_as_it_says() -> None:
    rng = np.random.default_rng(3)
    covered = 0
    for _ in range(400):
        hits = int(rng.binomial(120, 0.1))
        interval = rate_interval(hits, 120)
        covered += interval.low <= 0.1 <= interval.high
    assert 0.91 <= covered / 400 <= 0.99


def test_a_tiny_sample_with_rare_events_is_not_evidence() -> None:
    # 3 errors in 60 calls against 1 % in 1,140: a normal approximation would call this significant.
    assert compare_rates(11, 1140, 3, 60, alternative="greater").p_value > 0.02
    assert compare_rates(11, 1140, 12, 60, alternative="greater").p_value < 1e-6


def test_one_sided_rate_test_only_flags_the_worse_direction() -> None:
    worse = compare_rates(100, 1000, 50, 250, alternative="greater")
    better = compare_rates(100, 1000, 10, 250, alternative="greater")
    assert worse.p_value < 0.001 and worse.difference == pytest.approx(0.1)
    assert better.p_value > 0.5


def test_rate_tests_hold_their_level_under_no_change() -> None:
    rng = np.random.default_rng(11)
    rejections = sum(
        compare_rates(int(rng.binomial(2000, 0.1)), 2000, int(rng.binomial(200, 0.1)), 200, "greater").p_value
        < 0.05
        for _ in range(1000)
    )
    assert rejections / 1000 <= 0.06


def test_mean_interval_and_comparison() -> None:
    rng = np.random.default_rng(5)
    a, b = rng.normal(100, 10, 400), rng.normal(110, 10, 400)
    interval = mean_interval(a)
    assert interval.low < 100 < interval.high and interval.high - interval.low < 5
    assert mean_interval(a).low == interval.low, "seeded: the same data, the same interval"
    assert compare_means(a, b).p_value < 1e-6 and compare_means(a, b).difference == pytest.approx(10, abs=2)
    assert compare_means(a, rng.normal(100, 10, 400)).p_value > 0.001


def test_tail_test_sees_a_slower_tail_and_not_an_equal_one() -> None:
    rng = np.random.default_rng(9)
    stable = rng.lognormal(7, 0.4, 3000)
    slower = compare_tails(stable, rng.lognormal(7, 0.4, 400) * 1.5)
    same = compare_tails(stable, rng.lognormal(7, 0.4, 400))
    assert slower.p_value < 1e-6 and slower.candidate > 1.3 * slower.baseline
    assert same.p_value > 0.001


def test_holm_controls_the_family() -> None:
    assert holm([0.001, 0.04, 0.2], 0.05) == [True, False, False]
    assert holm([0.01, 0.02, 0.03], 0.1) == [True, True, True]


def test_wilson_interval_matches_its_closed_form() -> None:
    hits, n, z = 10, 100, 1.959963984540054
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    interval = rate_interval(hits, n)
    assert (interval.low, interval.high) == pytest.approx((centre - half, centre + half))
    assert (interval.low, interval.high) == pytest.approx((0.0552, 0.1744), abs=1e-4)


def test_fisher_on_the_tea_tasting_table() -> None:
    # Fisher's lady tasting tea: 3 of 4 right against 1 of 4; p = 17/35 two-sided, 17/70 one-sided.
    assert compare_rates(1, 4, 3, 4).p_value == pytest.approx(17 / 35)
    assert compare_rates(1, 4, 3, 4, alternative="greater").p_value == pytest.approx(17 / 70)


def test_two_proportion_z_matches_the_chi_squared_test_and_its_hand_value() -> None:
    z, p = two_proportion_z(45, 100, 60, 100)
    # pooled 0.525: z = 0.15 / sqrt(0.525 * 0.475 * 0.02)
    assert z == pytest.approx(0.15 / np.sqrt(0.525 * 0.475 * 0.02))
    chi2, chi2_p, _, _ = stats.chi2_contingency([[45, 55], [60, 40]], correction=False)
    assert z * z == pytest.approx(chi2) and p == pytest.approx(chi2_p)
    assert two_proportion_z(60, 100, 45, 100)[0] == pytest.approx(-z)
    assert two_proportion_z(0, 100, 0, 50) == (0.0, 1.0) and two_proportion_z(3, 0, 1, 5) == (0.0, 1.0)


def test_mann_whitney_is_scipys() -> None:
    a, b = [1.1, 2.3, 0.7, 4.2, 3.3, 2.8], [3.9, 5.1, 4.4, 2.9, 6.0, 5.5]
    expected = stats.mannwhitneyu(b, a, alternative="two-sided").pvalue
    assert compare_means(a, b).p_value == pytest.approx(expected)
