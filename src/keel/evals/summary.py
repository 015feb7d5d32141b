"""A run's aggregates: each metric with its confidence interval and trial-to-trial spread, per tag too."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from keel import stats
from keel.evals import metrics


@dataclass(frozen=True)
class ScoredTrial:
    """One finished trial of one item, as the summary needs it."""

    item_key: str
    trial: int
    tags: Sequence[str]
    scores: dict[str, float | None]


def score_rows(trials: Iterable[ScoredTrial], metric: str) -> dict[str, list[float | None]]:
    """Per item key, the metric's value in each trial (trial order); absent trials are left out."""
    by_item: dict[str, dict[int, float | None]] = defaultdict(dict)
    source = metrics.source_of(metric)
    for t in trials:
        value = t.scores.get(source)
        by_item[t.item_key][t.trial] = None if value is None or math.isnan(value) else float(value)
    return {key: [values[i] for i in sorted(values)] for key, values in by_item.items()}


def _clean(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 6)


def metric_summary(
    trials: Sequence[ScoredTrial], metric: str, resamples: int, level: float
) -> dict[str, Any] | None:
    spec = metrics.METRICS[metric]
    rows = list(score_rows(trials, metric).values())
    found = stats.estimate(rows, spec.aggregate, resamples=resamples, level=level)
    if found.n == 0:
        return None
    spread = stats.trial_spread(rows, spec.aggregate)
    return {
        "value": _clean(found.value),
        "low": _clean(found.low),
        "high": _clean(found.high),
        "n": found.n,
        "per_trial": [round(v, 6) for v in spread.per_trial],
        "trial_std": round(spread.std, 6),
    }


def summarize(
    trials: Sequence[ScoredTrial], *, resamples: int = 2000, level: float = 0.95, tag_resamples: int = 500
) -> dict[str, Any]:
    """{"metrics": {name: {value, low, high, n, per_trial, trial_std}}, "tags": {tag: {name: {...}}}};
    a metric no item scored is left out."""
    found = {}
    for name in metrics.METRICS:
        summary = metric_summary(trials, name, resamples, level)
        if summary is not None:
            found[name] = summary
    tags: dict[str, dict[str, Any]] = {}
    for tag in sorted({tag for t in trials for tag in t.tags}):
        tagged = [t for t in trials if tag in t.tags]
        tags[tag] = {
            name: s for name in found if (s := metric_summary(tagged, name, tag_resamples, level)) is not None
        }
    return {"confidence_level": level, "metrics": found, "tags": tags}
