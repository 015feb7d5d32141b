"""What a caller asks of a run (CLI and API alike), and what the runs service reports back: copies of
its rows, so no caller holds (or can write through) a live row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keel.store.eval_models import EvalResult, EvalRun


@dataclass(frozen=True)
class RunRecord:
    """A run as `EvalRuns` reports it."""

    id: str
    tenant: str
    name: str
    dataset_id: str
    dataset_version: int
    target: str
    trials: int
    concurrency: int
    config: dict[str, Any]
    overrides: dict[str, Any]
    status: str
    total: int
    done: int
    failed: int
    summary: dict[str, Any]
    cost_micros: int
    judge_cost_micros: int
    error: str | None
    created_by: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: EvalRun) -> RunRecord:
        return cls(
            id=row.id,
            tenant=row.tenant,
            name=row.name,
            dataset_id=row.dataset_id,
            dataset_version=row.dataset_version,
            target=row.target,
            trials=row.trials,
            concurrency=row.concurrency,
            config=dict(row.config),
            overrides=dict(row.overrides),
            status=row.status,
            total=row.total,
            done=row.done,
            failed=row.failed,
            summary=dict(row.summary),
            cost_micros=row.cost_micros,
            judge_cost_micros=row.judge_cost_micros,
            error=row.error,
            created_by=row.created_by,
            created_at=row.created_at,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


@dataclass(frozen=True)
class ResultRecord:
    """One trial of one item of a run, as `EvalRuns` reports it."""

    id: str
    run_id: str
    item_id: str
    item_key: str
    ordinal: int
    trial: int
    status: str
    output: dict[str, Any]
    scores: dict[str, Any]
    trace_id: str | None
    latency_ms: float | None
    cost_micros: int
    judge_cost_micros: int
    error: str | None
    finished_at: datetime | None

    @classmethod
    def of(cls, row: EvalResult) -> ResultRecord:
        return cls(
            id=row.id,
            run_id=row.run_id,
            item_id=row.item_id,
            item_key=row.item_key,
            ordinal=row.ordinal,
            trial=row.trial,
            status=row.status,
            output=dict(row.output),
            scores=dict(row.scores),
            trace_id=row.trace_id,
            latency_ms=row.latency_ms,
            cost_micros=row.cost_micros,
            judge_cost_micros=row.judge_cost_micros,
            error=row.error,
            finished_at=row.finished_at,
        )


class RunRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=200, description="The dataset's name or id.")
    version: int | None = Field(None, ge=1, description="None: the latest version.")
    target: Literal["copilot", "retrieval", "chat"] = "copilot"
    trials: int = Field(1, ge=1, le=20)
    concurrency: int | None = Field(None, ge=1, le=64)
    # Shaped like keel.toml: {"knowledge": {"retrieval": {"candidates": 1}}}.
    config: dict[str, Any] = Field(default_factory=dict)
    name: str = Field("", max_length=200)
