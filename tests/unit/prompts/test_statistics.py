"""The statistics behind experiment reports and canary judgements, on synthetic data with known truth,
and sticky assignment: the same user always lands in the same arm, and shares follow the weights."""

from __future__ import annotations

import numpy as np
import pytest

from keel.prompts.assignment import bucket, in_canary, pick
from keel.stats import compare_means, compare_rates, compare_tails, holm, mean_interval, rate_interval


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


def test_assignment_is_sticky_and_follows_the_weights() -> None:
    weights = [0.5, 0.3, 0.2]
    users = [f"user-{i}" for i in range(10_000)]
    first = [pick(weights, bucket("exp-tone", u)) for u in users]
    again = [pick(weights, bucket("exp-tone", u)) for u in users]
    assert first == again, "the same user always gets the same arm"
    shares = np.bincount(first, minlength=3) / len(users)
    assert np.all(np.abs(shares - np.array(weights)) <= 0.01)
    other = [pick(weights, bucket("exp-other", u)) for u in users]
    assert sum(a != b for a, b in zip(first, other, strict=True)) > 4000, "experiments assign independently"


def test_a_rising_canary_only_adds_users() -> None:
    users = [f"customer-{i}" for i in range(5000)]
    at_5 = {u for u in users if in_canary("cny_1", u, 5)}
    at_25 = {u for u in users if in_canary("cny_1", u, 25)}
    assert at_5 <= at_25 and abs(len(at_25) / 5000 - 0.25) < 0.02
