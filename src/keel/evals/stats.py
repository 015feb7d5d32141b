"""Confidence intervals and paired tests that make noise visible.

Scores come as one row per item holding that item's trials. Intervals are bootstrap intervals over
items (scipy.stats.bootstrap, BCa, percentile where BCa is undefined) of the per-item means: resampling
whole items keeps each item's trials together, so the interval covers both the spread between items
and the noise between trials. Resampling is seeded: the same scores always give the same interval.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from keel.evals.metrics import Aggregate

SEED = 20_240_601


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float
    # Items that had a score.
    n: int


@dataclass(frozen=True)
class TrialSpread:
    """The aggregate of each trial on its own: how much a rerun of the same configuration moves it."""

    per_trial: list[float]
    std: float
    range: float


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


def _statistic(aggregate: Aggregate) -> Callable[..., Any]:
    if aggregate == "mean":
        return np.mean
    q = 50.0 if aggregate == "p50" else 95.0
    return lambda values, axis=-1: np.percentile(values, q, axis=axis)


def item_means(rows: Sequence[Sequence[float | None]]) -> np.ndarray:
    """Each item's mean over the trials that scored it; items no trial scored are left out."""
    means = [float(np.mean(kept)) for row in rows if (kept := [v for v in row if v is not None])]
    return np.asarray(means, dtype=float)


def _interval(
    data: tuple[np.ndarray, ...], statistic: Callable[..., Any], resamples: int, level: float, paired: bool
) -> tuple[float, float]:
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # BCa on data without spread warns and returns NaN; the percentile interval then stands.
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                data,
                statistic,
                n_resamples=resamples,
                confidence_level=level,
                method=method,
                paired=paired,
                vectorized=True,
                random_state=np.random.default_rng(SEED),
            )
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        if not (math.isnan(low) or math.isnan(high)):
            return low, high
    return math.nan, math.nan


def estimate(
    rows: Sequence[Sequence[float | None]],
    aggregate: Aggregate = "mean",
    *,
    resamples: int = 2000,
    level: float = 0.95,
) -> Estimate:
    values = item_means(rows)
    statistic = _statistic(aggregate)
    if len(values) == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    value = float(statistic(values))
    if len(values) < 2 or np.all(values == values[0]):
        # One item, or no spread at all: nothing to resample; the interval is the value itself.
        return Estimate(value, value, value, len(values))
    low, high = _interval((values,), statistic, resamples, level, paired=False)
    return Estimate(value, low, high, len(values))


def trial_spread(rows: Sequence[Sequence[float | None]], aggregate: Aggregate = "mean") -> TrialSpread:
    trials = max((len(row) for row in rows), default=0)
    statistic = _statistic(aggregate)
    per_trial = []
    for t in range(trials):
        scored = [row[t] for row in rows if t < len(row) and row[t] is not None]
        if scored:
            per_trial.append(float(statistic(np.asarray(scored, dtype=float))))
    if len(per_trial) < 2:
        return TrialSpread(per_trial, 0.0, 0.0)
    return TrialSpread(per_trial, float(np.std(per_trial, ddof=1)), max(per_trial) - min(per_trial))


def _mcnemar(baseline: np.ndarray, candidate: np.ndarray) -> float:
    """Exact McNemar test: among the items whose outcome changed, is one direction more common?"""
    lost = int(np.sum((baseline == 1) & (candidate == 0)))
    gained = int(np.sum((baseline == 0) & (candidate == 1)))
    if lost + gained == 0:
        return 1.0
    return float(stats.binomtest(min(lost, gained), lost + gained, 0.5).pvalue)


def _wilcoxon(differences: np.ndarray) -> float:
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
    statistic = _statistic(aggregate)
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, "none", 0)
    a, b = float(statistic(baseline)), float(statistic(candidate))
    differences = candidate - baseline
    passfail = binary and bool(np.all(np.isin(baseline, (0, 1))) and np.all(np.isin(candidate, (0, 1))))
    test = "mcnemar" if passfail else "wilcoxon"
    p_value = _mcnemar(baseline, candidate) if passfail else _wilcoxon(differences)
    if n < 2 or not np.any(differences != differences[0]):
        return PairedDifference(a, b, b - a, b - a, b - a, p_value, test, n)

    def difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> Any:
        return statistic(y, axis=axis) - statistic(x, axis=axis)

    low, high = _interval((baseline, candidate), difference, resamples, level, paired=True)
    return PairedDifference(a, b, b - a, low, high, p_value, test, n)
