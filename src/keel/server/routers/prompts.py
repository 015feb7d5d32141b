"""The prompt registry over HTTP: versions, labels, rollback, history and diffs (docs/prompts.md)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from keel.keys import Principal, Role
from keel.prompts.registry import Actor, LabelMoveView, PromptSummary, PushResult, VersionView
from keel.prompts.spec import PromptSpec
from keel.server.deps import AdminCaller, AnyCaller, PromptWriter
from keel.server.services import PromptRegistryDep
from keel.server.threads import off_loop

router = APIRouter(prefix="/v1/prompts", tags=["prompts"])


def actor(principal: Principal) -> Actor:
    return Actor(principal.key_id, principal.role == Role.ADMIN)


class PushRequest(PromptSpec):
    """A prompt file's content as JSON: a version's content plus who it is and why it changed."""

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(None, max_length=2000)
    # The commit message of the version.
    message: str = Field("", max_length=2000)
    # Move this label to the pushed version (or to the unchanged newest one).
    label: str | None = Field(None, max_length=64)


class PushResponse(PushResult):
    object: Literal["prompt.push"] = "prompt.push"
    label_move: LabelMoveView | None = None


class LabelRequest(BaseModel):
    version: int = Field(ge=1)
    reason: str = Field("", max_length=2000)


class RollbackRequest(BaseModel):
    reason: str = Field("", max_length=2000)
    # Default: the version the label's last move took it from.
    version: int | None = Field(None, ge=1)


class DiffView(BaseModel):
    object: Literal["prompt.diff"] = "prompt.diff"
    name: str
    from_version: int
    to_version: int
    diff: str


@router.post("", status_code=201, response_model=PushResponse)
async def push_prompt(body: PushRequest, registry: PromptRegistryDep, caller: PromptWriter) -> PushResponse:
    spec = PromptSpec.model_validate(body.model_dump(include=set(PromptSpec.model_fields)))
    who = actor(caller)
    if body.label is not None:
        # Refused before anything is written.
        registry.require_may_move(body.label, who)
    pushed = await off_loop(
        registry.push, caller.tenant, body.name, spec, who, body.message, body.description
    )
    move = None
    if body.label is not None:
        current = (await off_loop(registry.prompt, caller.tenant, body.name)).labels.get(body.label)
        if current != pushed.version:
            move = await off_loop(
                registry.move_label, caller.tenant, body.name, body.label, pushed.version, who, body.message
            )
    return PushResponse(**pushed.model_dump(), label_move=move)


@router.get("")
async def list_prompts(registry: PromptRegistryDep, caller: AnyCaller) -> dict[str, Any]:
    found = await off_loop(registry.prompts, caller.tenant)
    return {"object": "list", "data": [p.model_dump(mode="json") for p in found]}


@router.get("/{name}", response_model=VersionView)
async def get_prompt(
    name: str,
    registry: PromptRegistryDep,
    caller: AnyCaller,
    label: Annotated[str | None, Query(max_length=64)] = None,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> VersionView:
    """The version a label points at (`production` by default), or a version by number."""
    return await off_loop(registry.version, caller.tenant, name, version=version, label=label)


@router.get("/{name}/summary", response_model=PromptSummary)
async def get_prompt_summary(name: str, registry: PromptRegistryDep, caller: AnyCaller) -> PromptSummary:
    return await off_loop(registry.prompt, caller.tenant, name)


@router.get("/{name}/versions")
async def list_versions(name: str, registry: PromptRegistryDep, caller: AnyCaller) -> dict[str, Any]:
    found = await off_loop(registry.versions, caller.tenant, name)
    return {"object": "list", "data": [v.model_dump(mode="json") for v in found]}


@router.get("/{name}/diff", response_model=DiffView)
async def diff_versions(
    name: str,
    registry: PromptRegistryDep,
    caller: AnyCaller,
    from_version: Annotated[int, Query(alias="from", ge=1)],
    to_version: Annotated[int, Query(alias="to", ge=1)],
) -> DiffView:
    text = await off_loop(registry.diff, caller.tenant, name, from_version, to_version)
    return DiffView(name=name, from_version=from_version, to_version=to_version, diff=text)


@router.get("/{name}/history")
async def label_history(
    name: str,
    registry: PromptRegistryDep,
    caller: AnyCaller,
    label: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    moves = await off_loop(registry.history, caller.tenant, name, label, limit)
    return {"object": "list", "data": [m.model_dump(mode="json") for m in moves]}


@router.put("/{name}/labels/{label}", response_model=LabelMoveView)
async def move_label(
    name: str, label: str, body: LabelRequest, registry: PromptRegistryDep, caller: PromptWriter
) -> LabelMoveView:
    return await off_loop(
        registry.move_label,
        caller.tenant,
        name,
        label,
        body.version,
        actor(caller),
        body.reason,
    )


@router.post("/{name}/labels/{label}/rollback", response_model=LabelMoveView)
async def rollback_label(
    name: str, label: str, body: RollbackRequest, registry: PromptRegistryDep, caller: PromptWriter
) -> LabelMoveView:
    return await off_loop(
        registry.rollback,
        caller.tenant,
        name,
        label,
        actor(caller),
        body.reason,
        body.version,
    )


@router.delete("/{name}/labels/{label}", status_code=204)
async def delete_label(
    name: str,
    label: str,
    registry: PromptRegistryDep,
    caller: PromptWriter,
    reason: Annotated[str, Query(max_length=2000)] = "",
) -> Response:
    await off_loop(registry.delete_label, caller.tenant, name, label, actor(caller), reason)
    return Response(status_code=204)


@router.delete("/{name}", status_code=204)
async def delete_prompt(name: str, registry: PromptRegistryDep, caller: AdminCaller) -> Response:
    await off_loop(registry.delete_prompt, caller.tenant, name, actor(caller))
    return Response(status_code=204)
