"""Evaluation's services, built once by the runtime and reached through it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from huey import Huey
from opentelemetry.trace import Tracer

from keel.config import Settings
from keel.copilot.grounding import GroundingChecker
from keel.copilot.memory import ConversationMemory
from keel.copilot.pipeline import Copilot
from keel.errors import InvalidRequestError, NotFoundError
from keel.evals.compare import Comparison, compare
from keel.evals.datasets import EvalDatasets
from keel.evals.harvest import Harvest
from keel.evals.judge import Judge
from keel.evals.pairwise import PairwiseResult, pairwise
from keel.evals.run_config import RunConfig
from keel.evals.runner import EvalRuns, Pipeline
from keel.evals.scoring import Scorer
from keel.evals.targets import ChatTarget, CopilotTarget, RetrievalTarget, Target
from keel.evals.usage import trace_usage
from keel.gateway.providers.base import EmbeddingProvider
from keel.gateway.service import Gateway
from keel.knowledge.retrieval import Retriever
from keel.review.queue import ReviewQueue
from keel.store.engine import Database


@dataclass(frozen=True)
class Evaluation:
    datasets: EvalDatasets
    harvest: Harvest
    runs: EvalRuns
    gateway: Gateway

    def compare(self, tenant: str, baseline: str, candidate: str) -> Comparison:
        return compare_runs(self.runs, tenant, baseline, candidate)

    async def judge(self, tenant: str, baseline: str, candidate: str, alias: str) -> PairwiseResult:
        """The two runs' first-trial answers judged side by side by the model `alias` (see `pairwise`);
        an alias the gateway does not know is refused before anything is judged."""
        if alias not in self.gateway.dispatcher.aliases:
            raise NotFoundError(
                f"No model alias '{alias}' to judge with.", code="model_not_found", param="judge"
            )
        return await judge_pairwise(self.runs, Judge(self.gateway, alias), tenant, baseline, candidate)


def compare_runs(runs: EvalRuns, tenant: str, baseline: str, candidate: str) -> Comparison:
    a, b = runs.get(tenant, baseline), runs.get(tenant, candidate)
    for run in (a, b):
        if run.status not in ("succeeded", "partial"):
            raise InvalidRequestError(f"Run '{run.id}' is {run.status}: only a finished run compares.")
    config = RunConfig.from_record(b.config).evals
    return compare(
        a.id,
        runs.scored_trials(tenant, a.id),
        b.id,
        runs.scored_trials(tenant, b.id),
        resamples=config.bootstrap_resamples,
        level=config.confidence_level,
    )


async def judge_pairwise(
    runs: EvalRuns, judge: Judge, tenant: str, baseline: str, candidate: str
) -> PairwiseResult:
    """The first trial's answers of two runs, judged side by side per item (see `pairwise`)."""

    def answers(run_id: str) -> dict[str, str]:
        return {
            r.item_key: r.output["reply"]
            for r in runs.results(tenant, run_id)
            if r.status == "done" and r.trial == 0 and r.output.get("reply")
        }

    run = runs.get(tenant, candidate)
    items = {key: item for key, item in ((i.key or "", i) for i in runs.items_of(run).values())}
    config = RunConfig.from_record(run.config).evals
    return await pairwise(
        judge,
        tenant,
        items,
        answers(baseline),
        answers(candidate),
        resamples=config.bootstrap_resamples,
        level=config.confidence_level,
    )


def served_prompt(copilot: Copilot, tenant: str) -> dict[str, Any] | None:
    use = copilot.served_prompt(tenant)
    return None if use is None else {"name": use.name, "version": use.version, "label": use.label}


def pipeline(
    database: Database, gateway: Gateway, copilot: Copilot, retriever: Retriever, embedder: EmbeddingProvider
) -> Pipeline:
    """Builds a run's target under the run's configuration, sharing the process's models and index."""

    def build(config: RunConfig, target: str) -> tuple[Target, Scorer]:
        configured = retriever.with_settings(config.retrieval)
        alias = config.evals.judge_alias
        scorer = Scorer(embedder, GroundingChecker(embedder), Judge(gateway, alias) if alias else None)
        if target == "retrieval":
            return RetrievalTarget(configured, config.evals.retrieval_k, config.evals.retrieval_mode), scorer
        if target == "chat":
            return ChatTarget(gateway, config.model_alias, config.copilot.max_tokens), scorer
        return (
            CopilotTarget(
                copilot.for_evaluation(config.copilot, configured),
                configured,
                config.copilot,
                ConversationMemory(database),
                gateway,
                lambda trace_id: trace_usage(database, trace_id),
                k=max(config.evals.retrieval_k, config.copilot.sources),
            ),
            scorer,
        )

    return build


def build_evaluation(
    settings: Settings,
    database: Database,
    queue: Huey,
    tracer: Tracer,
    gateway: Gateway,
    copilot: Copilot,
    retriever: Retriever,
    embedder: EmbeddingProvider,
    reviews: ReviewQueue,
) -> Evaluation:
    datasets = EvalDatasets(database)
    runs = EvalRuns(
        database,
        datasets,
        settings,
        pipeline(database, gateway, copilot, retriever, embedder),
        queue,
        tracer,
        served_prompt=lambda tenant: served_prompt(copilot, tenant),
    )
    return Evaluation(datasets, Harvest(reviews, copilot), runs, gateway)
