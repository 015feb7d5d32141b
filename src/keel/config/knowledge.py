"""Settings of the knowledge base: chunking per document type and retrieval."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field


class ChunkingSettings(BaseModel):
    """Chunk size and overlap for one document type, in characters (about four per English token)."""

    max_chars: int = Field(1200, ge=100)
    overlap_chars: int = Field(0, ge=0)


def _default_chunking() -> dict[str, ChunkingSettings]:
    return {
        "markdown": ChunkingSettings(max_chars=1200),
        "html": ChunkingSettings(max_chars=1200),
        "pdf": ChunkingSettings(max_chars=1200),
        "text": ChunkingSettings(max_chars=1000, overlap_chars=150),
        "code": ChunkingSettings(max_chars=1600),
        "ticket": ChunkingSettings(max_chars=4000),
    }


class RetrievalSettings(BaseModel):
    """Defaults of `POST /v1/search`; each can be set per request."""

    # "weighted": a convex mix of the two normalised scores; "rrf": reciprocal rank fusion.
    fusion: Literal["weighted", "rrf"] = "weighted"
    # Share of the keyword (BM25) score in weighted fusion; the vector score gets the rest.
    # 0.5 was best on SciFact's train queries (bench/retrieval_scifact.py).
    keyword_weight: float = Field(0.5, ge=0, le=1)
    rrf_k: int = Field(60, ge=1)
    # How many candidates each retriever hands to fusion.
    candidates: int = Field(100, ge=1, le=1000)
    # A local sentence-transformers cross-encoder folder; None: no rerank stage (asking for one is a 400).
    reranker_path: Path | None = None
    # How many fused candidates the reranker scores.
    rerank_candidates: int = Field(30, ge=1, le=200)


class KnowledgeSettings(BaseModel):
    # A larger upload is refused with 413 before anything is stored.
    max_document_bytes: int = Field(20 * 1024 * 1024, ge=1)
    chunking: dict[str, ChunkingSettings] = Field(default_factory=_default_chunking)
    retrieval: RetrievalSettings = RetrievalSettings()
