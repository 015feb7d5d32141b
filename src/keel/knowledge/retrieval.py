"""Search: keyword (BM25), vector or hybrid retrieval with filters and ACLs, fusion, and context packing."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from typing import Any, Literal

from opentelemetry.trace import NoOpTracer, Tracer
from pydantic import BaseModel, Field
from sqlalchemy import select

from keel.config import RetrievalSettings
from keel.errors import InvalidRequestError
from keel.knowledge.embeddings import TenantEmbeddings
from keel.knowledge.fusion import Fused, reciprocal_rank_fusion, weighted_fusion
from keel.knowledge.index.base import Hit, KnowledgeIndex, SearchScope
from keel.knowledge.packing import PackInput, Passage, pack
from keel.knowledge.rerank import Reranker
from keel.observe import attributes
from keel.store.engine import Database
from keel.store.models import Chunk, Document


class SearchFilters(BaseModel):
    doc_types: list[str] = Field(default_factory=list, max_length=20)
    document_ids: list[str] = Field(default_factory=list, max_length=500)
    source_prefix: str | None = Field(None, max_length=1000)


class PackOptions(BaseModel):
    token_budget: int = Field(ge=16, le=32000)


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=4000)
    mode: Literal["keyword", "vector", "hybrid"] = "hybrid"
    k: int = Field(10, ge=1, le=100)
    filters: SearchFilters = Field(default_factory=SearchFilters)
    # The end user's groups, as the calling application knows them; None sees only what needs no group.
    acl_groups: list[str] | None = Field(None, max_length=200)
    fusion: Literal["weighted", "rrf"] | None = None
    keyword_weight: float | None = Field(None, ge=0, le=1)
    candidates: int | None = Field(None, ge=1, le=1000)
    rerank: bool = False
    pack: PackOptions | None = None


class StageScore(BaseModel):
    score: float
    rank: int


class SearchResult(BaseModel):
    chunk_id: str
    document_id: str
    title: str
    source: str
    doc_type: str
    heading_path: str
    ordinal: int
    text: str
    meta: dict[str, Any]
    score: float
    scores: dict[str, StageScore]


class PackedPassage(BaseModel):
    chunk_ids: list[str]
    document_id: str
    text: str
    tokens: int
    trimmed: bool


class SearchResponse(BaseModel):
    object: Literal["search.results"] = "search.results"
    query: str
    mode: str
    results: list[SearchResult]
    packed: list[PackedPassage] | None = None
    packed_tokens: int | None = None


def rerank_results(results: list[SearchResult], scores: list[float]) -> list[SearchResult]:
    """Orders by the reranker's scores, keeping the earlier stages' scores beside the new one."""
    order = sorted(range(len(results)), key=lambda i: -scores[i])
    reranked = []
    for rank, i in enumerate(order, start=1):
        stages = {**results[i].scores, "rerank": StageScore(score=scores[i], rank=rank)}
        reranked.append(results[i].model_copy(update={"score": scores[i], "scores": stages}))
    return reranked


def scope_for(tenant: str, request: SearchRequest, *, sees_everything: bool) -> SearchScope:
    groups = None if sees_everything and request.acl_groups is None else frozenset(request.acl_groups or [])
    return SearchScope(
        tenant=tenant,
        acl_groups=groups,
        doc_types=frozenset(request.filters.doc_types),
        document_ids=frozenset(request.filters.document_ids),
        source_prefix=request.filters.source_prefix,
    )


class Retriever:
    def __init__(
        self,
        database: Database,
        index: KnowledgeIndex,
        embedder: TenantEmbeddings,
        settings: RetrievalSettings,
        count_tokens: Callable[[str], int],
        reranker: Reranker | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._reranker = reranker
        self._tracer = tracer or NoOpTracer()
        self._database = database
        self._index = index
        self._embedder = embedder
        self._settings = settings
        self._count_tokens = count_tokens

    def with_settings(self, settings: RetrievalSettings) -> Retriever:
        """This retriever with other defaults (an evaluation run's configuration); the index, embedder
        and reranker are shared."""
        variant = copy.copy(self)
        variant._settings = settings
        return variant

    async def search(self, request: SearchRequest, scope: SearchScope) -> SearchResponse:
        with self._tracer.start_as_current_span("retrieve") as span:
            response = await self._search(request, scope)
            span.set_attribute(attributes.TENANT, scope.tenant)
            span.set_attribute(attributes.RETRIEVAL_MODE, request.mode)
            span.set_attribute(attributes.RETRIEVAL_CHUNKS, [r.chunk_id for r in response.results])
            span.set_attribute(attributes.RETRIEVAL_SCORES, [round(r.score, 4) for r in response.results])
            for stage in ("keyword", "vector", "rerank"):
                scores = [r.scores[stage].score for r in response.results if stage in r.scores]
                if scores:
                    span.set_attribute(f"keel.retrieval.{stage}_scores", [round(x, 4) for x in scores])
            return response

    async def _search(self, request: SearchRequest, scope: SearchScope) -> SearchResponse:
        candidates = max(request.candidates or self._settings.candidates, request.k)

        async def keyword() -> list[Hit]:
            return await asyncio.to_thread(self._index.keyword_search, request.query, scope, candidates)

        async def by_vector() -> list[Hit]:
            vector = (await self._embedder.aembed(scope.tenant, [request.query]))[0]
            return await asyncio.to_thread(self._index.vector_search, vector, scope, candidates)

        # Both retrievers release the interpreter lock (SQLite, numpy, torch): run them side by side.
        stages = {"keyword": keyword, "vector": by_vector}
        wanted = [name for name in stages if request.mode in (name, "hybrid")]
        found = await asyncio.gather(*(stages[name]() for name in wanted))
        ranked: dict[str, list[Hit]] = dict(zip(wanted, found, strict=True))
        fused = self._fuse(request, ranked)
        if request.rerank:
            reranker = self._reranker
            if reranker is None:
                raise InvalidRequestError(
                    "No reranker is configured (knowledge.retrieval.reranker_path).", param="rerank"
                )
            results = await asyncio.to_thread(
                self._hydrate, scope.tenant, fused[: max(request.k, self._settings.rerank_candidates)]
            )
            scores = await asyncio.to_thread(reranker.score, request.query, [r.text for r in results])
            results = rerank_results(results, scores)[: request.k]
        else:
            results = await asyncio.to_thread(self._hydrate, scope.tenant, fused[: request.k])
        response = SearchResponse(query=request.query, mode=request.mode, results=results)
        if request.pack is not None:
            passages = await asyncio.to_thread(self._pack, results, request.pack.token_budget)
            response.packed = [PackedPassage(**vars(p)) for p in passages]
            response.packed_tokens = sum(p.tokens for p in passages)
        return response

    def _fuse(self, request: SearchRequest, ranked: dict[str, list[Hit]]) -> list[Fused]:
        if request.mode != "hybrid":
            return [
                Fused(h.chunk_id, h.score, {request.mode: {"score": h.score, "rank": r}})
                for r, h in enumerate(ranked[request.mode], start=1)
            ]
        if (request.fusion or self._settings.fusion) == "rrf":
            return reciprocal_rank_fusion(ranked, k=self._settings.rrf_k)
        weight = self._settings.keyword_weight if request.keyword_weight is None else request.keyword_weight
        return weighted_fusion(ranked, {"keyword": weight, "vector": 1.0 - weight})

    def _hydrate(self, tenant: str, fused: list[Fused]) -> list[SearchResult]:
        if not fused:
            return []
        with self._database.reading() as session:
            rows = session.execute(
                select(Chunk, Document)
                .join(Document, Chunk.document_id == Document.id)
                .where(Chunk.id.in_([f.chunk_id for f in fused]), Chunk.tenant == tenant)
            ).all()
        by_id = {chunk.id: (chunk, document) for chunk, document in rows}
        results = []
        for entry in fused:
            if entry.chunk_id not in by_id:  # deleted between the search and now
                continue
            chunk, document = by_id[entry.chunk_id]
            results.append(
                SearchResult(
                    chunk_id=chunk.id,
                    document_id=document.id,
                    title=document.title,
                    source=document.source,
                    doc_type=document.doc_type,
                    heading_path=chunk.heading_path,
                    ordinal=chunk.ordinal,
                    text=chunk.text,
                    meta=chunk.meta,
                    score=entry.score,
                    scores={
                        name: StageScore(score=s["score"], rank=int(s["rank"]))
                        for name, s in entry.stages.items()
                    },
                )
            )
        return results

    def _pack(self, results: list[SearchResult], budget: int) -> list[Passage]:
        inputs = [PackInput(r.chunk_id, r.document_id, r.ordinal, r.text) for r in results]
        return pack(inputs, budget, self._count_tokens)
