"""Seeded bootstrap intervals (scipy.stats.bootstrap): the same data always give the same interval."""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

SEED = 20_240_601
# How values are summarised: their mean, or a percentile (latency).
Aggregate = Literal["mean", "p50", "p95"]
# A sample: a list of numbers or a numpy array.
Values = Sequence[float] | np.ndarray


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float
    # Values (items, calls) the interval rests on.
    n: int


def statistic(aggregate: Aggregate) -> Callable[..., Any]:
    """The aggregate as a vectorised statistic (an `axis` argument), as scipy's bootstrap calls it."""
    if aggregate == "mean":
        return np.mean
    q = 50.0 if aggregate == "p50" else 95.0
    return lambda values, axis=-1: np.percentile(values, q, axis=axis)


def bootstrap_interval(
    data: tuple[np.ndarray, ...],
    of: Callable[..., Any],
    *,
    resamples: int = 2000,
    level: float = 0.95,
    paired: bool = False,
) -> tuple[float, float]:
    """The BCa interval of `of(*data)`; the percentile interval where BCa is undefined (NaN)."""
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            # BCa on data without spread warns and returns NaN; the percentile interval then stands.
            warnings.simplefilter("ignore")
            result = stats.bootstrap(
                data,
                of,
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


def summarise(
    values: Values,
    aggregate: Aggregate = "mean",
    *,
    resamples: int = 2000,
    level: float = 0.95,
) -> Interval:
    """The aggregate of `values` with its bootstrap interval; one value, or values without spread,
    leave nothing to resample: the interval is the value itself."""
    data = np.asarray(values, dtype=float)
    if len(data) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    of = statistic(aggregate)
    value = float(of(data))
    if len(data) < 2 or np.all(data == data[0]):
        return Interval(value, value, value, len(data))
    low, high = bootstrap_interval((data,), of, resamples=resamples, level=level)
    return Interval(value, low, high, len(data))


def mean_interval(values: Values, level: float = 0.95, resamples: int = 2000) -> Interval:
    """A seeded bootstrap interval of the mean."""
    return summarise(values, "mean", resamples=resamples, level=level)
