"""Two runs on the same items: the difference with a paired bootstrap interval, and a paired test."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from keel.stats.bootstrap import Aggregate, bootstrap_interval, statistic


@dataclass(frozen=True)
class PairedDifference:
    baseline: float
    candidate: float
    # candidate - baseline, with its paired bootstrap interval
    difference: float
    low: float
    high: float
    p_value: float
    test: str
    n: int


def mcnemar(baseline: np.ndarray, candidate: np.ndarray) -> float:
    """Exact McNemar test: among the items whose outcome changed, is one direction more common?"""
    lost = int(np.sum((baseline == 1) & (candidate == 0)))
    gained = int(np.sum((baseline == 0) & (candidate == 1)))
    if lost + gained == 0:
        return 1.0
    return float(stats.binomtest(min(lost, gained), lost + gained, 0.5).pvalue)


def wilcoxon(differences: np.ndarray) -> float:
    """Wilcoxon's signed-rank test (zero differences dropped); 1 when nothing changed."""
    if not np.any(differences != 0):
        return 1.0
    return float(stats.wilcoxon(differences, zero_method="wilcox").pvalue)


def paired_difference(
    baseline: np.ndarray,
    candidate: np.ndarray,
    aggregate: Aggregate = "mean",
    *,
    binary: bool = False,
    resamples: int = 2000,
    level: float = 0.95,
) -> PairedDifference:
    """candidate - baseline on the same items (one per-item value each, in the same order): a paired
    bootstrap interval of the difference, and McNemar's test for pass/fail values or Wilcoxon's
    signed-rank test otherwise."""
    n = len(baseline)
    of = statistic(aggregate)
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, "none", 0)
    a, b = float(of(baseline)), float(of(candidate))
    differences = candidate - baseline
    passfail = binary and bool(np.all(np.isin(baseline, (0, 1))) and np.all(np.isin(candidate, (0, 1))))
    test = "mcnemar" if passfail else "wilcoxon"
    p_value = mcnemar(baseline, candidate) if passfail else wilcoxon(differences)
    if n < 2 or not np.any(differences != differences[0]):
        return PairedDifference(a, b, b - a, b - a, b - a, p_value, test, n)

    def difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> Any:
        return of(y, axis=axis) - of(x, axis=axis)

    low, high = bootstrap_interval(
        (baseline, candidate), difference, resamples=resamples, level=level, paired=True
    )
    return PairedDifference(a, b, b - a, low, high, p_value, test, n)
