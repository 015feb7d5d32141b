"""Two runs compared item by item: per-metric paired differences with intervals and tests, and the
items that changed most."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from keel import stats
from keel.evals import metrics
from keel.evals.summary import ScoredTrial, score_rows
from keel.stats import PairedDifference


@dataclass(frozen=True)
class MetricChange(PairedDifference):
    """One metric's paired difference, candidate - baseline, with which way is better."""

    metric: str
    higher_is_better: bool


@dataclass(frozen=True)
class ItemChange:
    item_key: str
    metric: str
    baseline: float
    candidate: float
    difference: float


@dataclass(frozen=True)
class Comparison:
    baseline_run: str
    candidate_run: str
    confidence_level: float
    paired_items: int
    metrics: list[MetricChange]
    most_changed: list[ItemChange]

    def to_json(self) -> dict[str, Any]:
        return dict(jsonable(asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Comparison:
        """A comparison as `to_json` wrote it (a server's answer)."""
        return cls(
            data["baseline_run"],
            data["candidate_run"],
            data["confidence_level"],
            data["paired_items"],
            [MetricChange(**numbers(m)) for m in data["metrics"]],
            [ItemChange(**numbers(i)) for i in data["most_changed"]],
        )


def jsonable(value: Any) -> Any:
    """Floats rounded to six places and NaN (no value) as null, so the result is valid JSON."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return value


def numbers(row: dict[str, Any]) -> dict[str, Any]:
    """`jsonable`'s nulls back as NaN."""
    return {k: math.nan if v is None else v for k, v in row.items()}


# The metric that ranks "most changed" items: the first of these both runs have.
_CHANGE_METRICS = ("answer_f1", "groundedness", "ndcg@10", "answerability", "latency_p50")


def compare(
    baseline_run: str,
    baseline: Sequence[ScoredTrial],
    candidate_run: str,
    candidate: Sequence[ScoredTrial],
    *,
    resamples: int = 2000,
    level: float = 0.95,
    top: int = 10,
) -> Comparison:
    changes: list[MetricChange] = []
    per_item: dict[str, tuple[list[str], np.ndarray, np.ndarray]] = {}
    paired_keys: set[str] = set()
    for name, spec in metrics.METRICS.items():
        a_rows, b_rows = score_rows(baseline, name), score_rows(candidate, name)
        keys = [k for k in a_rows if k in b_rows]
        a_means = [stats.item_means([a_rows[k]]) for k in keys]
        b_means = [stats.item_means([b_rows[k]]) for k in keys]
        kept = [i for i, (x, y) in enumerate(zip(a_means, b_means, strict=True)) if len(x) and len(y)]
        if not kept:
            continue
        keys = [keys[i] for i in kept]
        a = np.asarray([float(a_means[i][0]) for i in kept])
        b = np.asarray([float(b_means[i][0]) for i in kept])
        paired_keys.update(keys)
        per_item[name] = (keys, a, b)
        d = stats.paired_difference(
            a, b, spec.aggregate, binary=spec.binary, resamples=resamples, level=level
        )
        changes.append(MetricChange(**vars(d), metric=name, higher_is_better=spec.higher_is_better))
    return Comparison(
        baseline_run, candidate_run, level, len(paired_keys), changes, _most_changed(per_item, top)
    )


def _most_changed(
    per_item: dict[str, tuple[list[str], np.ndarray, np.ndarray]], top: int
) -> list[ItemChange]:
    metric = next((m for m in _CHANGE_METRICS if m in per_item), None)
    if metric is None:
        return []
    keys, a, b = per_item[metric]
    order = np.argsort(-np.abs(b - a), kind="stable")[:top]
    return [
        ItemChange(keys[i], metric, float(a[i]), float(b[i]), float(b[i] - a[i]))
        for i in order
        if b[i] != a[i]
    ]
