"""Ingests one document: load by type, skip if unchanged, embed, then store it and index it atomically."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from keel.errors import KeelError, NotFoundError, PayloadTooLargeError, UpstreamError
from keel.knowledge.documents import (
    DocumentInput,
    UpsertOutcome,
    find_document,
    is_unchanged,
    upsert_document,
)
from keel.knowledge.embedding_cache import CachedEmbedder
from keel.knowledge.index.base import IndexEntry, KnowledgeIndex
from keel.knowledge.loaders.base import ChunkingOptions
from keel.knowledge.loaders.registry import LoaderRegistry
from keel.store.engine import Database
from keel.store.models import Document, JobItem


@dataclass(frozen=True)
class IngestRequest:
    tenant: str
    source: str
    data: bytes
    doc_type: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    acl: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class IngestResult:
    document_id: str
    outcome: UpsertOutcome
    chunks: int


def index_text(title: str, heading_path: str, text: str) -> str:
    """What the retrievers see: the chunk with its document title and headings, which carry its topic."""
    context = " > ".join(part for part in (title, heading_path) if part)
    return f"{context}\n{text}" if context and not text.startswith(context) else text


class Ingestion:
    def __init__(
        self,
        database: Database,
        index: KnowledgeIndex,
        embedder: CachedEmbedder,
        loaders: LoaderRegistry,
        chunking: Mapping[str, ChunkingOptions],
        max_document_bytes: int,
    ) -> None:
        self._database = database
        self._index = index
        self._embedder = embedder
        self._loaders = loaders
        self._chunking = chunking
        self.max_document_bytes = max_document_bytes
        # Called with the tenant after its knowledge changed (caches built on it are now stale).
        self.on_change: list[Callable[[str], None]] = []

    def _changed(self, tenant: str) -> None:
        for callback in self.on_change:
            callback(tenant)

    def check_size(self, size: int, source: str) -> None:
        if size > self.max_document_bytes:
            raise PayloadTooLargeError(
                f"{source} is {size} bytes; the limit is {self.max_document_bytes} bytes."
            )

    def ingest(self, request: IngestRequest, *, job_item_id: str | None = None) -> IngestResult:
        """Stores one document; when `job_item_id` is given, marks that item done in the same transaction."""
        result = self.ingest_batch([request], [job_item_id])[0]
        if isinstance(result, KeelError):
            raise result
        return result

    def ingest_batch(
        self, requests: list[IngestRequest], job_item_ids: list[str | None] | None = None
    ) -> list[IngestResult | KeelError]:
        """Loads every document, embeds all new chunks in shared batches, then stores each document in a
        transaction of its own. A bad document yields its error in place; the others go on."""
        item_ids = job_item_ids or [None] * len(requests)
        results: list[IngestResult | KeelError | None] = [None] * len(requests)
        prepared: list[tuple[int, DocumentInput, list[str]]] = []
        for position, request in enumerate(requests):
            try:
                document = self._load(request)
            except KeelError as exc:
                results[position] = exc
                continue
            unchanged = self._unchanged(document, item_ids[position])
            if unchanged is not None:
                results[position] = unchanged
                continue
            texts = [index_text(document.title, " > ".join(c.heading_path), c.text) for c in document.chunks]
            prepared.append((position, document, texts))
        # Embedding is the slow part: it runs outside any write transaction, through the cache.
        vectors = self._embed(prepared)
        changed: set[str] = set()
        # One transaction for the batch (commits are costly), one savepoint per document: a document that
        # cannot be stored fails alone, and each stored one commits together with its job item.
        with self._database.session() as session:
            for (position, document, texts), document_vectors in zip(prepared, vectors, strict=True):
                try:
                    with session.begin_nested():
                        result = self._store(session, document, texts, document_vectors, item_ids[position])
                except SQLAlchemyError as exc:
                    results[position] = UpstreamError(
                        f"Could not store {document.source}: {exc.__class__.__name__}"
                    )
                    continue
                results[position] = result
                if result.outcome != "unchanged":
                    changed.add(document.tenant)
        for tenant in changed:
            self._changed(tenant)
        assert all(r is not None for r in results), "every document has a result"
        return [r for r in results if r is not None]

    def _embed(self, prepared: list[tuple[int, DocumentInput, list[str]]]) -> list[npt.NDArray[np.float32]]:
        """Each document's vectors; a tenant's chunks share batches, and each tenant's are metered as its."""
        by_tenant: dict[str, list[int]] = {}
        for n, (_, document, _) in enumerate(prepared):
            by_tenant.setdefault(document.tenant, []).append(n)
        vectors: dict[int, npt.NDArray[np.float32]] = {}
        for tenant, members in by_tenant.items():
            embedded = self._embedder.embed(tenant, [text for n in members for text in prepared[n][2]])
            offset = 0
            for n in members:
                vectors[n] = embedded[offset : offset + len(prepared[n][2])]
                offset += len(prepared[n][2])
        return [vectors[n] for n in range(len(prepared))]

    def _load(self, request: IngestRequest) -> DocumentInput:
        self.check_size(len(request.data), request.source)
        loader = self._loaders.for_document(request.source, request.doc_type)
        options = self._chunking.get(loader.doc_type, ChunkingOptions())
        loaded = loader.load(request.data, source=request.source, options=options)
        return DocumentInput(
            tenant=request.tenant,
            source=request.source,
            title=loaded.title,
            doc_type=loaded.doc_type,
            text=loaded.text,
            chunks=loaded.chunks,
            meta={**loaded.meta, **request.meta},
            acl=sorted(set(request.acl)),
        )

    def _unchanged(self, document: DocumentInput, job_item_id: str | None) -> IngestResult | None:
        with self._database.session() as session:
            existing = find_document(session, document.tenant, document.source)
            if existing is None or not is_unchanged(existing, document):
                return None
            self._finish_item(session, job_item_id, existing.id, "unchanged")
            return IngestResult(existing.id, "unchanged", 0)

    def _store(
        self,
        session: Session,
        document: DocumentInput,
        texts: list[str],
        vectors: npt.NDArray[np.float32],
        job_item_id: str | None,
    ) -> IngestResult:
        record, chunks, outcome = upsert_document(session, document)
        if outcome != "unchanged":
            if outcome == "updated":
                self._index.remove_document(session, document.tenant, record.id)
            self._index.add(
                session,
                [
                    IndexEntry(
                        chunk_id=chunk.id,
                        document_id=record.id,
                        tenant=document.tenant,
                        doc_type=record.doc_type,
                        source=record.source,
                        acl=record.acl,
                        text=texts[i],
                        vector=vectors[i],
                    )
                    for i, chunk in enumerate(chunks)
                ],
            )
        self._finish_item(session, job_item_id, record.id, outcome)
        return IngestResult(record.id, outcome, len(chunks))

    def delete(self, tenant: str, document_id: str) -> None:
        with self._database.session() as session:
            record = session.scalar(
                select(Document).where(Document.id == document_id, Document.tenant == tenant)
            )
            if record is None:
                raise NotFoundError(f"No document '{document_id}'.", code="document_not_found")
            self._index.remove_document(session, tenant, document_id)
            session.delete(record)
        self._changed(tenant)

    @staticmethod
    def _finish_item(session: Session, job_item_id: str | None, document_id: str, outcome: str) -> None:
        if job_item_id is None:
            return
        item = session.get(JobItem, job_item_id)
        if item is not None:
            item.status = "done"
            item.outcome = outcome
            item.document_id = document_id
            item.payload = None
