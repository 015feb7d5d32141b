"""Rates (errors, escalations, negative feedback): Wilson intervals and tests of two rates.

Fisher's exact test is what experiments and canaries judge by: exact, so a small sample with rare
events (3 errors in 60 calls) is judged by its real chance, not by a normal approximation that
overstates it. The two-proportion z-test serves drift monitors, whose windows are large by rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from scipy import stats

from keel.stats.bootstrap import Interval


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


def two_proportion_z(
    baseline_hits: int, baseline_n: int, candidate_hits: int, candidate_n: int
) -> tuple[float, float]:
    """The two-sided two-proportion z-test with pooled variance: (z, p-value); z > 0 when the
    candidate's rate is higher. (0, 1) when either sample is empty or no rate can vary."""
    if baseline_n == 0 or candidate_n == 0:
        return 0.0, 1.0
    pooled = (baseline_hits + candidate_hits) / (baseline_n + candidate_n)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / baseline_n + 1 / candidate_n))
    if spread == 0:
        return 0.0, 1.0
    z = (candidate_hits / candidate_n - baseline_hits / baseline_n) / spread
    return z, float(2 * stats.norm.sf(abs(z)))
