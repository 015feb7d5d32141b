"""Fusing ranked lists from the keyword and vector retrievers into one ranking."""

from __future__ import annotations

from dataclasses import dataclass, field

from keel.knowledge.index.base import Hit


@dataclass
class Fused:
    chunk_id: str
    score: float
    # Per retriever: {"score": raw score, "rank": 1-based rank}.
    stages: dict[str, dict[str, float]] = field(default_factory=dict)


def _stages(ranked: dict[str, list[Hit]]) -> dict[str, Fused]:
    fused: dict[str, Fused] = {}
    for name, hits in ranked.items():
        for rank, hit in enumerate(hits, start=1):
            entry = fused.setdefault(hit.chunk_id, Fused(hit.chunk_id, 0.0))
            entry.stages[name] = {"score": hit.score, "rank": rank}
    return fused


def _ordered(fused: dict[str, Fused], ranked: dict[str, list[Hit]]) -> list[Fused]:
    """Best score first; a tie goes to the chunk ranked higher by some retriever, and between equal ranks
    to the retriever listed first in `ranked`. Never to the chunk id: ids are random, so a tie broken by
    them ranked the same results differently after every ingestion (SciFact's RRF nDCG@10 read 0.717,
    0.719 and 0.713 in runs of unchanged fusion code: bench/results/fusion_ties.md)."""
    order = {name: n for n, name in enumerate(ranked)}

    def key(entry: Fused) -> tuple[float, int, int]:
        rank, retriever = min((int(stage["rank"]), order[name]) for name, stage in entry.stages.items())
        return (-entry.score, rank, retriever)

    return sorted(fused.values(), key=key)


def reciprocal_rank_fusion(ranked: dict[str, list[Hit]], *, k: int = 60) -> list[Fused]:
    fused = _stages(ranked)
    for entry in fused.values():
        entry.score = sum(1.0 / (k + stage["rank"]) for stage in entry.stages.values())
    return _ordered(fused, ranked)


def absolute_score(score: float) -> float:
    """A score on [0, 1] without a range to place it in: one that already lies there (cosine similarity,
    PostgreSQL's ts_rank) keeps its value, a negative one is 0, and an unbounded one (SQLite's BM25) is
    squashed by s / (1 + s), so a weak lone match stays weak."""
    if score <= 0.0:
        return 0.0
    return score if score <= 1.0 else score / (1.0 + score)


def weighted_fusion(ranked: dict[str, list[Hit]], weights: dict[str, float]) -> list[Fused]:
    """A convex mix of min-max normalised scores; a retriever that did not return a chunk adds 0.

    A retriever whose hits all score the same (a lone hit, most often) gives min-max nothing to go on:
    its hits keep their own score on [0, 1] (`absolute_score`) rather than all becoming 1.0, which made a
    single irrelevant hit look like a perfect match."""
    fused = _stages(ranked)
    for name, hits in ranked.items():
        if not hits:
            continue
        scores = [h.score for h in hits]
        low, high = min(scores), max(scores)
        spread = high - low
        for hit in hits:
            normalised = (hit.score - low) / spread if spread > 0 else absolute_score(hit.score)
            fused[hit.chunk_id].score += weights.get(name, 0.0) * normalised
    return _ordered(fused, ranked)
