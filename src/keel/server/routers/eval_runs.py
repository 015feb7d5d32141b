"""Evaluation over HTTP: datasets, runs, comparisons and the gate (`/v1/evals/...`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field, model_validator

from keel.evals.datasets import DatasetInfo
from keel.evals.formats import to_csv, to_jsonl
from keel.evals.gate import gate, parse_allowance
from keel.evals.items import DatasetItem
from keel.evals.run_types import RunRecord, RunRequest
from keel.server.deps import DatasetWriter, EvalReader, EvalRunner
from keel.server.services import EvaluationDep
from keel.server.threads import off_loop

router = APIRouter(prefix="/v1/evals", tags=["evals"])


class DatasetRequest(BaseModel):
    """A new version of a dataset from exactly one source: items, reviewed answers, or traces."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    mode: Literal["replace", "append"] = "replace"
    items: list[DatasetItem] | None = Field(None, max_length=50_000)
    from_reviews: bool = False
    from_traces: list[str] | None = Field(None, max_length=5_000)

    @model_validator(mode="after")
    def _one_source(self) -> DatasetRequest:
        sources = [self.items is not None, self.from_reviews, self.from_traces is not None]
        if sum(sources) != 1:
            raise ValueError("give exactly one of 'items', 'from_reviews' or 'from_traces'")
        return self


class VersionView(BaseModel):
    version: int
    item_count: int
    origin: str
    note: str
    created_at: datetime


class DatasetView(BaseModel):
    id: str
    object: Literal["eval.dataset"] = "eval.dataset"
    name: str
    description: str
    version: int
    item_count: int
    versions: list[VersionView]

    @classmethod
    def of(cls, info: DatasetInfo) -> DatasetView:
        return cls(
            id=info.id,
            name=info.name,
            description=info.description,
            version=info.version,
            item_count=info.item_count,
            versions=[VersionView(**vars(v)) for v in info.versions],
        )


class RunView(BaseModel):
    id: str
    object: Literal["eval.run"] = "eval.run"
    name: str
    status: str
    dataset_id: str
    dataset_version: int
    target: str
    trials: int
    concurrency: int
    total: int
    done: int
    failed: int
    progress: float
    config: dict[str, Any]
    overrides: dict[str, Any]
    summary: dict[str, Any]
    cost: float
    judge_cost: float
    created_at: datetime
    finished_at: datetime | None

    @classmethod
    def of(cls, run: RunRecord) -> RunView:
        return cls(
            id=run.id,
            name=run.name,
            status=run.status,
            dataset_id=run.dataset_id,
            dataset_version=run.dataset_version,
            target=run.target,
            trials=run.trials,
            concurrency=run.concurrency,
            total=run.total,
            done=run.done,
            failed=run.failed,
            progress=(run.done + run.failed) / run.total if run.total else 0.0,
            config=run.config,
            overrides=run.overrides,
            summary=run.summary,
            cost=run.cost_micros / 1_000_000,
            judge_cost=run.judge_cost_micros / 1_000_000,
            created_at=run.created_at,
            finished_at=run.finished_at,
        )


class GateRequest(BaseModel):
    baseline: str = Field(min_length=1, max_length=40)
    candidate: str = Field(min_length=1, max_length=40)
    max_drop: dict[str, float] = Field(min_length=1, max_length=50)


@router.post("/datasets", status_code=201, response_model=DatasetView)
def create_dataset(body: DatasetRequest, evals: EvaluationDep, caller: DatasetWriter) -> DatasetView:
    evals = evals
    if body.items is not None:
        items, origin = body.items, "api"
    elif body.from_reviews:
        items, origin = evals.harvest.from_reviews(caller.tenant), "reviews"
    else:
        items, origin = evals.harvest.from_traces(caller.tenant, body.from_traces or []), "traces"
    info = evals.datasets.write(
        caller.tenant,
        body.name,
        items,
        mode=body.mode,
        origin=origin,
        description=body.description,
        created_by=caller.key_id,
    )
    return DatasetView.of(info)


@router.get("/datasets")
def list_datasets(evals: EvaluationDep, caller: EvalReader) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [DatasetView.of(d) for d in evals.datasets.list_all(caller.tenant)],
    }


@router.get("/datasets/{name}", response_model=DatasetView)
def get_dataset(name: str, evals: EvaluationDep, caller: EvalReader) -> DatasetView:
    return DatasetView.of(evals.datasets.get(caller.tenant, name))


@router.get("/datasets/{name}/items", response_model=None)
def get_dataset_items(
    name: str,
    evals: EvaluationDep,
    caller: EvalReader,
    version: Annotated[int | None, Query(ge=1)] = None,
    format: Annotated[Literal["json", "jsonl", "csv"], Query()] = "json",
) -> Response | dict[str, Any]:
    info, stored = evals.datasets.items(caller.tenant, name, version)
    items = [s.item for s in stored]
    if format == "jsonl":
        return PlainTextResponse(to_jsonl(items), media_type="application/x-ndjson")
    if format == "csv":
        return PlainTextResponse(to_csv(items), media_type="text/csv")
    version_shown = version or info.version
    data = [item.model_dump(mode="json") for item in items]
    return {"object": "list", "dataset": info.name, "version": version_shown, "data": data}


@router.post("/runs", status_code=202, response_model=RunView)
def create_run(body: RunRequest, evals: EvaluationDep, caller: EvalRunner) -> RunView:
    """Queues the run; `GET /v1/evals/runs/{id}` follows its progress."""
    return RunView.of(evals.runs.create(caller.tenant, body, created_by=caller.key_id))


@router.get("/runs")
def list_runs(
    evals: EvaluationDep, caller: EvalReader, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [RunView.of(r) for r in evals.runs.list_runs(caller.tenant, limit)],
    }


@router.get("/runs/{run_id}", response_model=RunView)
def get_run(run_id: str, evals: EvaluationDep, caller: EvalReader) -> RunView:
    return RunView.of(evals.runs.get(caller.tenant, run_id))


@router.get("/runs/{run_id}/results")
def get_run_results(run_id: str, evals: EvaluationDep, caller: EvalReader) -> dict[str, Any]:
    results = evals.runs.results(caller.tenant, run_id)
    data = [
        {
            "item_key": r.item_key,
            "trial": r.trial,
            "status": r.status,
            "scores": r.scores,
            "output": r.output,
            "trace_id": r.trace_id,
            "latency_ms": r.latency_ms,
            "error": r.error,
        }
        for r in results
    ]
    return {"object": "list", "data": data}


@router.get("/compare")
def compare(
    evals: EvaluationDep,
    caller: EvalReader,
    baseline: Annotated[str, Query(max_length=40)],
    candidate: Annotated[str, Query(max_length=40)],
) -> dict[str, Any]:
    return evals.compare(caller.tenant, baseline, candidate).to_json()


class CompareRequest(BaseModel):
    baseline: str = Field(max_length=40)
    candidate: str = Field(max_length=40)
    # A model alias: the two runs' answers are also judged side by side (it spends model calls).
    judge: str | None = Field(None, min_length=1, max_length=200)


@router.post("/compare")
async def compare_and_judge(body: CompareRequest, evals: EvaluationDep, caller: EvalRunner) -> dict[str, Any]:
    """The comparison `GET /compare` gives, with the judge's pairwise verdicts when `judge` is set."""
    comparison = await off_loop(evals.compare, caller.tenant, body.baseline, body.candidate)
    found: dict[str, Any] = comparison.to_json()
    if body.judge is not None:
        judged = await evals.judge(caller.tenant, body.baseline, body.candidate, body.judge)
        found["pairwise"] = judged.to_json()
    return found


@router.post("/gate")
def run_gate(body: GateRequest, evals: EvaluationDep, caller: EvalReader) -> dict[str, Any]:
    allowances = [parse_allowance(f"{metric}={value}") for metric, value in body.max_drop.items()]
    result = gate(evals.compare(caller.tenant, body.baseline, body.candidate), allowances)
    return {
        "passed": result.passed,
        "checks": [
            {
                "metric": c.metric,
                "max_drop": c.max_drop,
                "worsening": c.worsening,
                "low": c.low,
                "high": c.high,
                "failed": c.failed,
                "reason": c.reason,
            }
            for c in result.checks
        ],
    }
