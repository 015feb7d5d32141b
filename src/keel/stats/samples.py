"""Two independent samples (two versions, two arms): their means (latency, cost, scores) by the
Mann-Whitney U test, their tails (p95 latency) by an exact test, and Holm's correction over a family."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from keel.stats.bootstrap import Values
from keel.stats.rates import Comparison, compare_rates


def compare_means(baseline: Values, candidate: Values) -> Comparison:
    """The difference of the means, with the two-sided Mann-Whitney U test's p-value."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if len(a) == 0 or len(b) == 0:
        base = float(np.mean(a)) if len(a) else math.nan
        cand = float(np.mean(b)) if len(b) else math.nan
        return Comparison(base, cand, cand - base, 1.0, "mann_whitney", len(a), len(b))
    base, cand = float(np.mean(a)), float(np.mean(b))
    if np.all(a == a[0]) and np.all(b == a[0]):
        return Comparison(base, cand, 0.0, 1.0, "mann_whitney", len(a), len(b))
    p_value = float(stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)
    return Comparison(base, cand, cand - base, p_value, "mann_whitney", len(a), len(b))


def compare_tails(baseline: Values, candidate: Values, quantile: float = 0.95) -> Comparison:
    """Is the candidate's tail heavier? One-sided exact test on the calls above the pooled quantile;
    reports both samples' own quantiles."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return Comparison(math.nan, math.nan, math.nan, 1.0, "tail_fisher", len(a), len(b))
    edge = float(np.quantile(np.concatenate([a, b]), quantile))
    above = compare_rates(int(np.sum(a > edge)), len(a), int(np.sum(b > edge)), len(b), "greater")
    base, cand = float(np.quantile(a, quantile)), float(np.quantile(b, quantile))
    return Comparison(base, cand, cand - base, above.p_value, "tail_fisher", len(a), len(b))


def holm(p_values: Values, alpha: float) -> list[bool]:
    """Which of several tests reject at family-wise level `alpha` (Holm's step-down procedure)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, index in enumerate(order):
        if p_values[index] > alpha / (len(p_values) - rank):
            break
        rejected[index] = True
    return rejected
