"""What a chunker produces: text with its position and heading path, before it is stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ChunkDraft:
    text: str
    heading_path: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
