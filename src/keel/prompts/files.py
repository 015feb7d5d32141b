"""Prompts as code: YAML prompt files in a repository, pushed by `keel prompts sync DIR`.

Each file holds one prompt (keel.prompts.prompt_file). Syncing checks every file before it pushes any,
pushes each (an unchanged file makes no version) and, when asked, moves a label to each pushed version,
so a merged pull request is what a label serves.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from keel.errors import InvalidRequestError
from keel.prompts.prompt_file import PromptFile, parse_prompt_file
from keel.prompts.registry import Actor, PromptRegistry

SUFFIXES = (".yaml", ".yml")


class SyncItem(BaseModel):
    path: str
    name: str
    version: int
    created: bool
    # The label's version before the sync moved it (None: it did not move, or it was new).
    label_moved_from: int | None = None
    label_moved: bool = False


def read_folder(folder: Path) -> list[PromptFile]:
    if not folder.is_dir():
        raise InvalidRequestError(f"{folder} is not a folder.", code="invalid_prompt_folder")
    paths = sorted(p for p in folder.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    files = [parse_prompt_file(p.read_text(encoding="utf-8"), str(p.relative_to(folder))) for p in paths]
    seen: dict[str, str] = {}
    for file in files:
        if file.name in seen:
            raise InvalidRequestError(
                f"{file.path} and {seen[file.name]} both hold the prompt '{file.name}'.",
                code="invalid_prompt_folder",
            )
        seen[file.name] = file.path
    return files


def sync_folder(
    registry: PromptRegistry,
    tenant: str,
    folder: Path,
    actor: Actor,
    *,
    label: str | None = None,
    message: str = "",
) -> list[SyncItem]:
    """Every file is parsed and its templates compiled before the first push, so a broken file in a
    pull request pushes nothing."""
    files = read_folder(folder)
    if label is not None:
        registry.require_may_move(label, actor)
    items = []
    for file in files:
        pushed = registry.push(tenant, file.name, file.spec, actor, message, file.description)
        item = SyncItem(path=file.path, name=file.name, version=pushed.version, created=pushed.created)
        if label is not None:
            current = registry.prompt(tenant, file.name).labels.get(label)
            if current != pushed.version:
                reason = message or f"sync of {file.path}"
                registry.move_label(tenant, file.name, label, pushed.version, actor, reason)
                item.label_moved, item.label_moved_from = True, current
        items.append(item)
    return items
