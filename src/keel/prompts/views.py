"""What the registry hands out: who acts, and read-only views of prompts, versions and label moves."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydantic import BaseModel

from keel.prompts.spec import PromptSpec
from keel.store.prompt_models import PromptLabelMove


@dataclass(frozen=True)
class Actor:
    """Who changes the registry: a key's id (or "cli"), and whether it may move protected labels."""

    id: str
    admin: bool


class VersionView(BaseModel):
    name: str
    version: int
    spec: PromptSpec
    content_hash: str
    author: str
    message: str
    created_at: datetime
    # The labels pointing at this version now.
    labels: list[str]


class PromptSummary(BaseModel):
    name: str
    description: str
    latest: int
    labels: dict[str, int]
    created_at: datetime


class PushResult(BaseModel):
    name: str
    version: int
    # False: the content equals the newest version's, and no version was made.
    created: bool
    content_hash: str


class LabelMoveView(BaseModel):
    label: str
    from_version: int | None
    to_version: int
    kind: str
    actor: str
    reason: str
    created_at: datetime


def move_view(move: PromptLabelMove) -> LabelMoveView:
    return LabelMoveView(
        label=move.label,
        from_version=move.from_version,
        to_version=move.to_version,
        kind=move.kind,
        actor=move.actor,
        reason=move.reason,
        created_at=move.created_at,
    )
