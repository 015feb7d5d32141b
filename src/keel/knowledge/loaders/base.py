"""The loader contract: every document type turns raw bytes into normalised text and chunks.

A loader is a small object with a `doc_type`, the file `extensions` it claims, and `load()`. It never
touches the database or the models: ingestion stores and embeds what it returns. Bad input (empty,
corrupt, binary junk where text is expected) raises `DocumentError`, which says why in words a user
can act on; ingestion records that reason on the job item and goes on with the other documents.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from keel.errors import InvalidRequestError
from keel.knowledge.chunking.types import ChunkDraft


class DocumentError(InvalidRequestError):
    """A document that cannot be read as its type (empty, corrupt, not text)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="unprocessable_document")


@dataclass(frozen=True)
class ChunkingOptions:
    """Per type; sizes are in characters (about four per token for English)."""

    max_chars: int = 1200
    overlap_chars: int = 0


@dataclass(frozen=True)
class LoadedDocument:
    doc_type: str
    title: str
    # The whole normalised text; its hash decides whether a re-ingest changes anything.
    text: str
    chunks: list[ChunkDraft]
    meta: dict[str, Any] = field(default_factory=dict)


class Loader(Protocol):
    doc_type: str
    extensions: tuple[str, ...]

    def load(self, data: bytes, *, source: str, options: ChunkingOptions) -> LoadedDocument: ...


@runtime_checkable
class TextLayered(Protocol):
    """A loader of a binary format whose text the database could not scan for personal data (PDF): it
    turns the file into a text form of its own, which `load` reads as it reads the file, so that a
    queued document is stored as text (and masked like every text) instead of as the raw file."""

    def text_layer(self, data: bytes, *, source: str) -> bytes | None:
        """The text form, or None when the file cannot be read (its job then reports why)."""
        ...
