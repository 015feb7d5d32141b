"""What a caller asks of a run (CLI and API alike), and what the runs service reports back: copies of
its rows, so no caller holds (or can write through) a live row."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from keel.store.eval_models import EvalResult, EvalRun
from keel.store.records import copied


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
        return copied(cls, row)


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
        return copied(cls, row)


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
