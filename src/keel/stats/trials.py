"""Scores as one row per item holding that item's trials (None: a trial that gave no score).

Intervals are over items, of the per-item means: resampling whole items keeps each item's trials
together, so the interval covers both the spread between items and the noise between trials.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from keel.stats.bootstrap import Aggregate, Interval, statistic, summarise


@dataclass(frozen=True)
class TrialSpread:
    """The aggregate of each trial on its own: how much a rerun of the same configuration moves it."""

    per_trial: list[float]
    std: float
    range: float


def item_means(rows: Sequence[Sequence[float | None]]) -> np.ndarray:
    """Each item's mean over the trials that scored it; items no trial scored are left out."""
    means = [float(np.mean(kept)) for row in rows if (kept := [v for v in row if v is not None])]
    return np.asarray(means, dtype=float)


def estimate(
    rows: Sequence[Sequence[float | None]],
    aggregate: Aggregate = "mean",
    *,
    resamples: int = 2000,
    level: float = 0.95,
) -> Interval:
    """The aggregate over items with its bootstrap interval (`n`: the items that had a score)."""
    return summarise(item_means(rows), aggregate, resamples=resamples, level=level)


def trial_spread(rows: Sequence[Sequence[float | None]], aggregate: Aggregate = "mean") -> TrialSpread:
    trials = max((len(row) for row in rows), default=0)
    of = statistic(aggregate)
    per_trial = []
    for t in range(trials):
        scored = [row[t] for row in rows if t < len(row) and row[t] is not None]
        if scored:
            per_trial.append(float(of(np.asarray(scored, dtype=float))))
    if len(per_trial) < 2:
        return TrialSpread(per_trial, 0.0, 0.0)
    return TrialSpread(per_trial, float(np.std(per_trial, ddof=1)), max(per_trial) - min(per_trial))
