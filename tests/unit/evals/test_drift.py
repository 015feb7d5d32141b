"""The drift tests and the alert rule, on seeded synthetic windows: at each monitor's default minimum
window nothing alerts without a shift, and the shifts the monitors exist for do alert."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from keel.config import DriftMonitors
from keel.evals.drift import AlertRule, Comparison, decide, distribution_test, mix_test, mmd_test, rate_test
from keel.evals.drift_watch import rule

DEFAULTS = DriftMonitors()


def queries(rng: np.random.Generator, n: int, centres: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Unit vectors around a few topic centres, like sentence embeddings of one kind of traffic."""
    picked = centres[rng.integers(len(centres), size=n)]
    vectors = picked + rng.normal(scale=0.9 / np.sqrt(centres.shape[1]), size=picked.shape)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)  # type: ignore[no-any-return]


def centres(rng: np.random.Generator, k: int = 6, dims: int = 64) -> npt.NDArray[np.float64]:
    c = rng.normal(size=(k, dims))
    return c / np.linalg.norm(c, axis=1, keepdims=True)  # type: ignore[no-any-return]


def test_embeddings_without_a_shift_do_not_alert_and_with_one_do() -> None:
    rng = np.random.default_rng(7)
    topics, other = centres(rng), centres(rng)
    n = DEFAULTS.query_embeddings.min_samples
    same = mmd_test(queries(rng, n, topics), queries(rng, n, topics), permutations=200)
    assert decide(same, rule(DEFAULTS.query_embeddings)) == "ok"
    # Half of the recent traffic about new topics.
    mixed = np.vstack([queries(rng, n - n // 2, topics), queries(rng, n // 2, other)])
    shifted = mmd_test(queries(rng, n, topics), mixed, permutations=200)
    assert decide(shifted, rule(DEFAULTS.query_embeddings)) == "drift"
    assert shifted.effect > same.effect


def test_the_embedding_test_alerts_at_about_its_level_without_a_shift() -> None:
    rng = np.random.default_rng(11)
    topics = centres(rng)
    alerts = sum(
        mmd_test(queries(rng, 60, topics), queries(rng, 60, topics), permutations=100, seed=i).p_value < 0.05
        for i in range(60)
    )
    # 5 % of 60 is 3; the binomial's 99.9th percentile is 9.
    assert alerts <= 9


def test_mmd_p_value_is_a_permutation_p_value() -> None:
    x = np.eye(4)[[0, 1, 0, 1]]
    result = mmd_test(x, x.copy(), permutations=99)
    # Identical windows: the observed statistic is the smallest possible, every permutation reaches it.
    assert result.p_value == 1.0 and result.effect == 0.0
    assert mmd_test(x[:1], x, permutations=99).p_value == 1.0  # too small to test


def test_scores_without_a_shift_rarely_alert_and_a_drop_of_a_tenth_mostly_does() -> None:
    rng = np.random.default_rng(3)
    n = DEFAULTS.retrieval_top_score.min_samples
    top_score = rule(DEFAULTS.retrieval_top_score)
    # Spread like the retrieval top scores bench/drift.py measured (standard deviation about 0.1).
    pool = np.clip(rng.normal(0.81, 0.1, size=20 * n), 0, 1)
    same = [
        decide(distribution_test(rng.choice(pool, n), rng.choice(pool, n)), top_score) for _ in range(100)
    ]
    dropped = [
        decide(distribution_test(rng.choice(pool, n), rng.choice(pool, n) - 0.1), top_score)
        for _ in range(100)
    ]
    assert same.count("drift") <= 5 and dropped.count("drift") >= 80
    larger = distribution_test(rng.choice(pool, 400), rng.choice(pool, 400) - 0.1)
    assert larger.detail["mean_shift"] == pytest.approx(-0.1, abs=0.02)
    assert larger.effect == pytest.approx(0.1, abs=0.02)


def test_groundedness_shares_with_ties() -> None:
    rng = np.random.default_rng(5)
    n = DEFAULTS.groundedness.min_samples

    def shares(p: float) -> list[float]:
        sentences = 1 + rng.poisson(1.5, size=n)
        return list(rng.binomial(sentences, p) / sentences)

    assert decide(distribution_test(shares(0.85), shares(0.85)), rule(DEFAULTS.groundedness)) == "ok"
    assert decide(distribution_test(shares(0.85), shares(0.6)), rule(DEFAULTS.groundedness)) == "drift"


def test_mix_matches_a_hand_computed_chi_squared() -> None:
    result = mix_test(["a"] * 10 + ["b"] * 20, ["a"] * 20 + ["b"] * 10)
    # Expected 15 in every cell: chi2 = 4 * 5² / 15; Cramér's V = sqrt(chi2 / 60).
    assert result.statistic == pytest.approx(20 / 3)
    assert result.p_value == pytest.approx(0.009823, abs=1e-5)
    assert result.effect == pytest.approx(1 / 3)


def test_mix_pools_rare_categories() -> None:
    result = mix_test(["a"] * 50 + ["b"] * 50 + ["rare"], ["a"] * 50 + ["b"] * 49 + ["other_rare"] * 2)
    assert "baseline_share:(other)" in result.detail
    assert "baseline_share:rare" not in result.detail
    assert mix_test(["a"] * 5, ["a"] * 5).p_value == 1.0  # one category: nothing to compare


def test_intent_mix_without_a_shift_does_not_alert_and_with_one_does() -> None:
    rng = np.random.default_rng(13)
    intents = np.array(["order_status", "returns", "warranty", "delivery", "billing", "out_of_scope"])
    usual = np.array([0.3, 0.2, 0.15, 0.15, 0.1, 0.1])
    n = DEFAULTS.intent_mix.min_samples
    same = mix_test(list(rng.choice(intents, n, p=usual)), list(rng.choice(intents, n, p=usual)))
    assert decide(same, rule(DEFAULTS.intent_mix)) == "ok"
    # Traffic from somewhere else: most of it out of scope (what bench/drift.py's other sources do).
    elsewhere = np.array([0.1, 0.05, 0.05, 0.1, 0.1, 0.6])
    shifted = mix_test(list(rng.choice(intents, n, p=usual)), list(rng.choice(intents, n, p=elsewhere)))
    assert decide(shifted, rule(DEFAULTS.intent_mix)) == "drift"
    # A delivery outage (delivery questions double) needs more than the minimum window.
    outage = np.array([0.25, 0.15, 0.1, 0.3, 0.1, 0.1])
    larger = mix_test(list(rng.choice(intents, 600, p=usual)), list(rng.choice(intents, 600, p=outage)))
    assert decide(larger, rule(DEFAULTS.intent_mix)) == "drift"


def test_rate_matches_a_hand_computed_z_test() -> None:
    result = rate_test([True] * 20 + [False] * 80, [True] * 35 + [False] * 65)
    # Pooled rate 0.275: z = 0.15 / sqrt(0.275 * 0.725 * (1/100 + 1/100)).
    assert result.statistic == pytest.approx(2.37542, abs=1e-4)
    assert result.p_value == pytest.approx(0.017529, abs=1e-5)
    assert result.effect == pytest.approx(0.15)
    assert rate_test([False] * 10, [False] * 10).p_value == 1.0


def test_escalation_rate_without_a_shift_does_not_alert_and_ten_points_more_does() -> None:
    rng = np.random.default_rng(17)
    n = DEFAULTS.escalation_rate.min_samples
    same = rate_test(list(rng.random(n) < 0.3), list(rng.random(n) < 0.3))
    assert decide(same, rule(DEFAULTS.escalation_rate)) == "ok"
    risen = rate_test(list(rng.random(n) < 0.3), list(rng.random(n) < 0.4))
    assert decide(risen, rule(DEFAULTS.escalation_rate)) == "drift"


def test_small_windows_never_alert() -> None:
    strong = rate_test([False] * 9, [True] * 9)
    assert strong.p_value < 0.001
    assert decide(strong, AlertRule(min_samples=10, p_value=0.01)) == "insufficient_data"
    assert decide(strong, AlertRule(min_samples=9, p_value=0.01)) == "drift"


def test_a_significant_but_tiny_change_does_not_alert() -> None:
    result = Comparison("two_proportion", 5.0, 1e-6, 0.01, 100_000, 100_000)
    assert decide(result, AlertRule(min_samples=100, p_value=0.01, min_effect=0.03)) == "ok"
    assert decide(result, AlertRule(min_samples=100, p_value=0.01, min_effect=0.0)) == "drift"
