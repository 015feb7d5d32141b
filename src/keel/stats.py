"""Pure statistics on two independent samples (two versions, two arms): intervals and tests that make
noise visible. Foundation level, so any service may use them without importing another service.

- rates (errors, escalations, negative feedback): Wilson intervals; Fisher's exact test, two-sided to
  compare, one-sided to ask "is the candidate worse?". Exact, so a small sample with rare events (3
  errors in 60 calls) is judged by its real chance, not by a normal approximation that overstates it.
- means (latency, cost, scores): seeded bootstrap intervals; the Mann-Whitney U test to compare.
- a tail (p95 latency): how many calls of each sample exceed the pooled sample's quantile, by Fisher's
  exact test: under no change each call is as likely to be among the slowest whichever sample it is in.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

SEED = 20_240_601


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Comparison:
    """candidate against baseline: the change in the metric's own unit, and the test's p-value."""

    baseline: float
    candidate: float
    difference: float
    p_value: float
    test: str
    baseline_n: int
    candidate_n: int


def rate_interval(hits: int, n: int, level: float = 0.95) -> Interval:
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    interval = stats.binomtest(hits, n).proportion_ci(confidence_level=level, method="wilson")
    return Interval(hits / n, float(interval.low), float(interval.high), n)


def compare_rates(
    baseline_hits: int,
    baseline_n: int,
    candidate_hits: int,
    candidate_n: int,
    alternative: Literal["two-sided", "greater"] = "two-sided",
) -> Comparison:
    """Fisher's exact test on the 2x2 table; "greater": is the candidate's rate higher?"""
    if baseline_n == 0 or candidate_n == 0:
        base = baseline_hits / baseline_n if baseline_n else math.nan
        cand = candidate_hits / candidate_n if candidate_n else math.nan
        return Comparison(base, cand, cand - base, 1.0, "fisher", baseline_n, candidate_n)
    table = [[candidate_hits, candidate_n - candidate_hits], [baseline_hits, baseline_n - baseline_hits]]
    p_value = float(stats.fisher_exact(table, alternative=alternative).pvalue)
    base, cand = baseline_hits / baseline_n, candidate_hits / candidate_n
    return Comparison(base, cand, cand - base, min(p_value, 1.0), "fisher", baseline_n, candidate_n)


def mean_interval(values: Sequence[float], level: float = 0.95, resamples: int = 2000) -> Interval:
    """A seeded bootstrap interval of the mean (BCa; percentile where BCa is undefined)."""
    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    mean = float(np.mean(data))
    if len(data) < 2 or np.all(data == data[0]):
        return Interval(mean, mean, mean, len(data))
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                (data,),
                np.mean,
                n_resamples=resamples,
                confidence_level=level,
                method=method,
                vectorized=True,
                random_state=np.random.default_rng(SEED),
            )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if not (math.isnan(low) or math.isnan(high)):
            return Interval(mean, low, high, len(data))
    return Interval(mean, math.nan, math.nan, len(data))


def compare_means(baseline: Sequence[float], candidate: Sequence[float]) -> Comparison:
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


def compare_tails(
    baseline: Sequence[float], candidate: Sequence[float], quantile: float = 0.95
) -> Comparison:
    """Is the candidate's tail heavier? One-sided exact test on the calls above the pooled quantile;
    reports both samples' own quantiles."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if len(a) == 0 or len(b) == 0:
        return Comparison(math.nan, math.nan, math.nan, 1.0, "tail_fisher", len(a), len(b))
    edge = float(np.quantile(np.concatenate([a, b]), quantile))
    above = compare_rates(int(np.sum(a > edge)), len(a), int(np.sum(b > edge)), len(b), "greater")
    base, cand = float(np.quantile(a, quantile)), float(np.quantile(b, quantile))
    return Comparison(base, cand, cand - base, above.p_value, "tail_fisher", len(a), len(b))


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Which of several tests reject at family-wise level `alpha` (Holm's step-down procedure)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = [False] * len(p_values)
    for rank, index in enumerate(order):
        if p_values[index] > alpha / (len(p_values) - rank):
            break
        rejected[index] = True
    return rejected
