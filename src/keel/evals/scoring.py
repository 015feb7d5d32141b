"""Scores one target output against its item with every metric that applies."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from keel.copilot.grounding import GroundingChecker
from keel.evals import metrics
from keel.evals.items import DatasetItem
from keel.evals.judge import Judge
from keel.evals.targets import TargetOutput
from keel.gateway.providers.base import EmbeddingProvider

Scores = dict[str, float | None]


@dataclass(frozen=True)
class Scored:
    scores: Scores
    judge_cost_micros: int


class Scorer:
    def __init__(
        self, embedder: EmbeddingProvider, checker: GroundingChecker, judge: Judge | None = None
    ) -> None:
        self._embedder = embedder
        self._checker = checker
        self._judge = judge

    def _similarity(self, reply: str, reference: str) -> float:
        vectors = self._embedder.embed([reply, reference])
        return metrics.cosine(vectors[0], vectors[1])

    async def score(
        self, tenant: str, item: DatasetItem, output: TargetOutput, latency_s: float, *, retrieves: bool
    ) -> Scored:
        scores: Scores = {"latency": latency_s, "cost": output.cost_micros / 1_000_000}
        if retrieves:
            ranked = metrics.label_ranking(output.retrieved, item.expected_sources)
            scores.update(metrics.retrieval_scores(ranked, item.expected_sources))
            scores["top_score"] = output.top_score
        judge_cost = 0
        if output.reply is not None:
            reply, reference = output.reply, item.reference_answer
            if reference is not None:
                scores["answer_f1"] = metrics.answer_f1(reply, reference)
                scores["answer_similarity"] = await asyncio.to_thread(self._similarity, reply, reference)
            scores.update(
                await asyncio.to_thread(
                    metrics.score_reference_free, self._checker, reply, output.cited_passages
                )
            )
            scores["source_precision"] = metrics.source_precision(
                metrics.label_ranking(output.cited, item.expected_sources), item.expected_sources
            )
            if output.status is not None:
                scores["answerability"] = metrics.answerability_handled(item.answerability, output.status)
                scores["escalated"] = float(output.status == "escalated")
                scores["answered"] = float(output.status == "answered")
            if self._judge is not None:
                verdict = await self._judge.grade(
                    tenant, item.question, reply, reference, [text for _, text in output.cited_passages]
                )
                scores["judge_correctness"] = verdict.correctness
                scores["judge_faithfulness"] = verdict.faithfulness
                judge_cost = verdict.cost_micros
        return Scored(scores, judge_cost)
