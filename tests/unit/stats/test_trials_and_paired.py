"""Bootstrap intervals and paired tests on data whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from keel import stats


def test_interval_covers_the_mean_and_narrows_with_more_items() -> None:
    rng = np.random.default_rng(11)
    small = [[float(v)] for v in rng.normal(0.5, 0.1, 30)]
    large = [[float(v)] for v in rng.normal(0.5, 0.1, 600)]
    a, b = stats.estimate(small), stats.estimate(large)
    assert a.low < a.value < a.high and b.low < b.value < b.high
    assert (b.high - b.low) < (a.high - a.low) / 2
    assert b.low < 0.5 < b.high


def test_interval_is_the_same_for_the_same_scores() -> None:
    rows = [[0.1, 0.3], [0.9, 0.7], [0.5, 0.4], [0.2, 0.8]]
    assert stats.estimate(rows) == stats.estimate(rows)


def test_no_spread_and_missing_values() -> None:
    assert stats.estimate([[1.0], [1.0], [1.0]]) == stats.Interval(1.0, 1.0, 1.0, 3)
    # An item no trial scored is left out; an item is the mean of its scored trials.
    found = stats.estimate([[None, None], [1.0, None], [0.0, 0.5]])
    assert found.n == 2 and found.value == pytest.approx((1.0 + 0.25) / 2)
    assert stats.estimate([]).n == 0


def test_trial_spread() -> None:
    rows = [[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    spread = stats.trial_spread(rows)
    assert spread.per_trial == [1.0, 0.0, 0.5]
    assert spread.range == 1.0 and spread.std == pytest.approx(0.5)


def test_paired_difference_finds_a_real_shift_and_not_noise() -> None:
    rng = np.random.default_rng(3)
    base = rng.random(200)
    shifted = stats.paired_difference(base, base + 0.05 + rng.normal(0, 0.02, 200))
    assert shifted.low > 0 and shifted.p_value < 0.001 and shifted.test == "wilcoxon"
    same = stats.paired_difference(base, base)
    assert (same.difference, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
    noise = stats.paired_difference(base, base + rng.normal(0, 0.02, 200))
    assert noise.low < 0 < noise.high


def test_mcnemar_for_pass_fail() -> None:
    base = np.array([1.0] * 50 + [0.0] * 50)
    better = base.copy()
    better[50:70] = 1.0  # 20 items gained, none lost
    result = stats.paired_difference(base, better, binary=True)
    assert result.test == "mcnemar"
    # Exact binomial: 20 of 20 discordant pairs one way, two-sided p = 2 * 0.5**20.
    assert result.p_value == pytest.approx(2 * 0.5**20)
    assert result.difference == pytest.approx(0.2)


def test_percentile_difference() -> None:
    base = np.arange(100, dtype=float)
    slower = base + 10.0
    result = stats.paired_difference(base, slower, "p95")
    assert result.difference == pytest.approx(10.0) and result.low == result.high == pytest.approx(10.0)


def test_wilcoxon_matches_scipys_documented_example() -> None:
    # scipy.stats.wilcoxon's documentation: these 15 differences give the exact p = 0.041259765625.
    d = np.array([6, 8, 14, 16, 23, 24, 28, 29, 41, -48, 49, 56, 60, -67, 75], dtype=float)
    result = stats.paired_difference(np.zeros(15), d)
    assert result.test == "wilcoxon" and result.p_value == pytest.approx(0.041259765625)
    assert result.difference == pytest.approx(d.mean())


def test_bootstrap_interval_covers_the_true_mean_about_as_often_as_it_says() -> None:
    # Skewed data (exponential, mean 1), 40 items: BCa's coverage should be near the nominal 95 %.
    rng = np.random.default_rng(17)
    covered = sum(
        (found := stats.estimate([[float(v)] for v in rng.exponential(1.0, 40)], resamples=1000)).low
        <= 1.0
        <= found.high
        for _ in range(200)
    )
    assert 0.88 <= covered / 200 <= 0.99


def test_paired_interval_covers_the_true_difference_about_as_often_as_it_says() -> None:
    rng = np.random.default_rng(23)
    covered = 0
    for _ in range(200):
        base = rng.random(50)
        found = stats.paired_difference(base, base + 0.05 + rng.normal(0, 0.1, 50), resamples=1000)
        covered += found.low <= 0.05 <= found.high
    assert 0.88 <= covered / 200 <= 0.99


def test_one_bootstrap_serves_every_caller() -> None:
    # An experiment's mean interval and an evaluation's interval over single-trial items are one
    # computation: the same values give the same interval.
    values = list(np.random.default_rng(5).normal(10, 2, 80))
    assert stats.mean_interval(values) == stats.estimate([[v] for v in values])
