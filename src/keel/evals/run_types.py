"""What a caller asks of a run (CLI and API alike)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# The rows a run's service returns, named here for its callers (routers and the CLI never import the ORM).
from keel.store.eval_models import EvalResult as EvalResult
from keel.store.eval_models import EvalRun as EvalRun


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
