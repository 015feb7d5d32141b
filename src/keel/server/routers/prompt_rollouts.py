"""Experiments and canary releases of prompts over HTTP (docs/prompts.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from keel.prompts.canary import CanaryRequest, CanaryView
from keel.prompts.experiments import ExperimentReport, ExperimentRequest, ExperimentView
from keel.server.deps import AdminCaller, AnyCaller, PromptWriter
from keel.server.routers.prompts import actor
from keel.server.services import CanariesDep, ExperimentsDep
from keel.server.threads import off_loop

router = APIRouter(prefix="/v1", tags=["prompts"])


class StopRequest(BaseModel):
    reason: str = Field("", max_length=2000)


class AbortRequest(BaseModel):
    # Named, never defaulted: aborting a release is not a guess.
    label: str = Field(min_length=1, max_length=64)
    reason: str = Field("", max_length=2000)


@router.post("/experiments", status_code=201, response_model=ExperimentView)
async def start_experiment(
    body: ExperimentRequest, experiments: ExperimentsDep, caller: PromptWriter
) -> ExperimentView:
    return await off_loop(experiments.start, caller.tenant, body, actor(caller))


@router.get("/experiments")
async def list_experiments(experiments: ExperimentsDep, caller: AnyCaller) -> dict[str, Any]:
    found = await off_loop(experiments.list, caller.tenant)
    return {"object": "list", "data": [e.model_dump(mode="json") for e in found]}


@router.get("/experiments/{name}", response_model=ExperimentView)
async def get_experiment(name: str, experiments: ExperimentsDep, caller: AnyCaller) -> ExperimentView:
    return await off_loop(experiments.get, caller.tenant, name)


@router.get("/experiments/{name}/report", response_model=ExperimentReport)
async def experiment_report(
    name: str,
    experiments: ExperimentsDep,
    caller: AnyCaller,
    alpha: Annotated[float, Query(gt=0, lt=0.5)] = 0.05,
) -> ExperimentReport:
    """Per-arm metrics with confidence intervals, each arm against the first with a significance test."""
    return await off_loop(experiments.report, caller.tenant, name, alpha)


@router.post("/experiments/{name}/stop", response_model=ExperimentView)
async def stop_experiment(
    name: str, body: StopRequest, experiments: ExperimentsDep, caller: PromptWriter
) -> ExperimentView:
    return await off_loop(experiments.stop, caller.tenant, name, actor(caller), body.reason)


@router.post("/prompts/{name}/canary", status_code=201, response_model=CanaryView)
async def start_canary(
    name: str, body: CanaryRequest, canaries: CanariesDep, caller: PromptWriter
) -> CanaryView:
    """Releases `version` to the label through rising traffic steps, judged at each step."""
    return await off_loop(canaries.start, caller.tenant, name, body, actor(caller))


@router.get("/prompts/{name}/canary", response_model=CanaryView)
async def canary_status(
    name: str,
    canaries: CanariesDep,
    caller: AnyCaller,
    label: Annotated[str, Query(max_length=64)] = "production",
) -> CanaryView:
    """The label's newest canary; a running one with its current step judged now (nothing acted on)."""
    return await off_loop(canaries.status, caller.tenant, name, label)


@router.post("/prompts/{name}/canary/abort", response_model=CanaryView)
async def abort_canary(
    name: str, body: AbortRequest, canaries: CanariesDep, caller: PromptWriter
) -> CanaryView:
    return await off_loop(canaries.abort, caller.tenant, name, body.label, actor(caller), body.reason)


@router.post("/canaries/check")
async def check_canaries(canaries: CanariesDep, caller: AdminCaller) -> dict[str, Any]:
    """Judges every running canary of the tenant now and acts (the queue does this every minute)."""
    moved = await off_loop(canaries.check_all, caller.tenant)
    return {"object": "list", "data": [c.model_dump(mode="json") for c in moved]}


@router.get("/canaries")
async def list_canaries(canaries: CanariesDep, caller: AnyCaller) -> dict[str, Any]:
    found = await off_loop(canaries.list, caller.tenant)
    return {"object": "list", "data": [c.model_dump(mode="json") for c in found]}
