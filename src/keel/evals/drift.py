"""Drift tests: do a recent window of observations and a baseline window come from one distribution?

Pure functions over arrays, one per kind of signal; reading the windows is `drift_windows`' job and
deciding when to alert is `decide`'s. Every test returns a p-value (how surprising the difference is
if nothing changed) and an effect (how large the change is, in the signal's own unit), because a large
window makes a trivial change significant and a small one hides a real change: an alert needs both.

- embeddings: maximum mean discrepancy (MMD) with a Gaussian kernel, p-value by permutation;
  effect: the unbiased MMD² (about 0 when the windows match).
- scores (retrieval top score, groundedness): two-sample Kolmogorov-Smirnov; effect: the
  Wasserstein distance, in score units (a uniform drop of 0.1 has distance 0.1).
- category mixes (intents, reply statuses): chi-squared on the 2 x k table; effect: Cramér's V.
- rates (escalation, negative feedback): two-proportion z-test; effect: recent minus baseline rate.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from keel.stats import two_proportion_z

Verdict = Literal["ok", "drift", "insufficient_data"]
# Categories expected fewer times than this in a window are pooled: chi-squared needs it.
MIN_EXPECTED = 5.0


@dataclass(frozen=True)
class Comparison:
    test: str
    statistic: float
    p_value: float
    effect: float
    baseline_n: int
    recent_n: int
    # What an operator reads first: the means, rates or shares that moved.
    detail: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AlertRule:
    """When a monitor alerts: both windows hold `min_samples`, p < `p_value`, |effect| >= `min_effect`."""

    min_samples: int
    p_value: float
    min_effect: float = 0.0


def decide(result: Comparison, rule: AlertRule) -> Verdict:
    if min(result.baseline_n, result.recent_n) < rule.min_samples:
        return "insufficient_data"
    if result.p_value < rule.p_value and abs(result.effect) >= rule.min_effect:
        return "drift"
    return "ok"


def mmd_test(
    baseline: npt.ArrayLike,
    recent: npt.ArrayLike,
    *,
    permutations: int = 500,
    seed: int = 0,
) -> Comparison:
    """Two-sample test on vectors (rows): Gaussian-kernel MMD, bandwidth by the median heuristic.

    The p-value is (1 + permuted statistics at least the observed one) / (1 + permutations), exact in
    the permutation sense at any window size; the seed makes a check repeatable.
    """
    x = np.asarray(baseline, dtype=np.float64)
    y = np.asarray(recent, dtype=np.float64)
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        return Comparison("mmd", 0.0, 1.0, 0.0, n, m)
    pooled = np.vstack([x, y])
    squares = np.sum(pooled * pooled, axis=1)
    distances = np.maximum(squares[:, None] + squares[None, :] - 2.0 * pooled @ pooled.T, 0.0)
    off_diagonal = distances[~np.eye(n + m, dtype=bool)]
    bandwidth = float(np.median(off_diagonal)) or 1.0
    kernel = np.exp(-distances / bandwidth)
    # The biased MMD² is w'Kw with w = 1/n on the baseline rows and -1/m on the recent ones, so every
    # permutation is a column of W and all of them cost one matrix product.
    weights = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    observed = float(weights @ kernel @ weights)
    rng = np.random.default_rng(seed)
    shuffled = rng.permuted(np.tile(weights, (permutations, 1)), axis=1).T
    null = np.einsum("ib,ib->b", kernel @ shuffled, shuffled)
    p_value = (1 + int(np.sum(null >= observed - 1e-12))) / (1 + permutations)
    # The effect is the unbiased MMD² (the kernel's diagonal left out), which is near 0 when nothing
    # changed, unlike the biased statistic the permutations use.
    within_x = (kernel[:n, :n].sum() - n) / (n * (n - 1))
    within_y = (kernel[n:, n:].sum() - m) / (m * (m - 1))
    unbiased = float(within_x + within_y - 2 * kernel[:n, n:].mean())
    return Comparison("mmd", observed, p_value, max(unbiased, 0.0), n, m, {"bandwidth": bandwidth})


def distribution_test(baseline: Sequence[float], recent: Sequence[float]) -> Comparison:
    """Kolmogorov-Smirnov on scores. With ties (groundedness takes few values) its p-value is
    conservative: it alerts less often than the nominal level, never more."""
    x = np.asarray(baseline, dtype=np.float64)
    y = np.asarray(recent, dtype=np.float64)
    if len(x) == 0 or len(y) == 0:
        return Comparison("ks", 0.0, 1.0, 0.0, len(x), len(y))
    ks = stats.ks_2samp(x, y)
    distance = float(stats.wasserstein_distance(x, y))
    shift = float(np.mean(y) - np.mean(x))
    detail = {"baseline_mean": float(np.mean(x)), "recent_mean": float(np.mean(y)), "mean_shift": shift}
    return Comparison("ks", float(ks.statistic), float(ks.pvalue), distance, len(x), len(y), detail)


def mix_test(baseline: Sequence[str], recent: Sequence[str]) -> Comparison:
    """Chi-squared test of homogeneity on category counts; rare categories are pooled first."""
    before, after = Counter(baseline), Counter(recent)
    n, m = len(baseline), len(recent)
    if n == 0 or m == 0:
        return Comparison("chi2", 0.0, 1.0, 0.0, n, m)
    total = n + m
    kept, pooled = [], [0, 0]
    for category in sorted(set(before) | set(after)):
        pair = before[category] + after[category]
        # The smaller window's expected count decides whether the cell can stand on its own.
        if pair * min(n, m) / total >= MIN_EXPECTED:
            kept.append((category, before[category], after[category]))
        else:
            pooled[0] += before[category]
            pooled[1] += after[category]
    if pooled[0] + pooled[1]:
        kept.append(("(other)", pooled[0], pooled[1]))
    detail = {f"baseline_share:{c}": old / n for c, old, _ in kept}
    detail |= {f"recent_share:{c}": new / m for c, _, new in kept}
    if len(kept) < 2:
        return Comparison("chi2", 0.0, 1.0, 0.0, n, m, detail)
    table = np.array([[old for _, old, _ in kept], [new for _, _, new in kept]], dtype=np.float64)
    chi2, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    cramers_v = math.sqrt(float(chi2) / total)
    return Comparison("chi2", float(chi2), float(p_value), cramers_v, n, m, detail)


def rate_test(baseline: Sequence[bool], recent: Sequence[bool]) -> Comparison:
    """Two-proportion z-test (pooled variance); the effect is the change of the rate, signed."""
    n, m = len(baseline), len(recent)
    if n == 0 or m == 0:
        return Comparison("two_proportion", 0.0, 1.0, 0.0, n, m)
    before, after = sum(baseline) / n, sum(recent) / m
    z, p_value = two_proportion_z(sum(baseline), n, sum(recent), m)
    detail = {"baseline_rate": before, "recent_rate": after}
    return Comparison("two_proportion", z, p_value, after - before, n, m, detail)
