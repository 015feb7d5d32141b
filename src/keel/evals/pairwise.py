"""Two runs' answers judged side by side, item by item, in an order drawn at random for each item."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from keel.evals.compare import jsonable, numbers
from keel.evals.items import DatasetItem
from keel.evals.judge import Judge
from keel.stats import Interval, estimate


@dataclass(frozen=True)
class PairwiseResult:
    candidate_wins: int
    baseline_wins: int
    ties: int
    # The judge gave no usable verdict.
    unjudged: int
    # Per item 1 when the candidate's answer is better, 0.5 a tie, 0 the baseline's: its mean and interval.
    preference: Interval
    cost_micros: int

    def to_json(self) -> dict[str, Any]:
        return dict(jsonable(asdict(self)))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PairwiseResult:
        """A result as `to_json` wrote it (a server's answer)."""
        return cls(**{**data, "preference": Interval(**numbers(data["preference"]))})


async def pairwise(
    judge: Judge,
    tenant: str,
    items: Mapping[str, DatasetItem],
    baseline: Mapping[str, str],
    candidate: Mapping[str, str],
    *,
    seed: int = 0,
    resamples: int = 2000,
    level: float = 0.95,
) -> PairwiseResult:
    """`baseline` and `candidate` map item keys to answers; items both answered are judged. The seed
    fixes the orders drawn, so the same two runs are always shown to the judge the same way."""
    rng = random.Random(seed)
    scores: list[list[float | None]] = []
    wins = {"a": 0, "b": 0, "tie": 0}
    unjudged = cost = 0
    for key in sorted(set(baseline) & set(candidate) & set(items)):
        item = items[key]
        winner, spent = await judge.prefer(
            tenant, item.question, item.reference_answer, baseline[key], candidate[key], rng
        )
        cost += spent
        if winner is None:
            unjudged += 1
            continue
        wins[winner] += 1
        scores.append([{"a": 0.0, "tie": 0.5, "b": 1.0}[winner]])
    return PairwiseResult(
        wins["b"], wins["a"], wins["tie"], unjudged, estimate(scores, resamples=resamples, level=level), cost
    )
