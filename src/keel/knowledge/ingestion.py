"""Ingests documents: load by type, skip if unchanged, embed, then store and index each atomically.

Whoever asks (the ingestion jobs) learns of each stored document through `on_stored`, called inside the
transaction that stored it, so that it can record the outcome in that same transaction; ingestion itself
writes no job state.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

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
from keel.knowledge.loaders.base import ChunkingOptions, TextLayered
from keel.knowledge.loaders.registry import LoaderRegistry
from keel.logs import get_logger
from keel.store.engine import Database
from keel.store.models import Document

log = get_logger(__name__)


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


# Called with the storing transaction, the document's position in the batch and its result.
OnStored = Callable[[Session, int, IngestResult], None]
# Called with the texts of a batch's new chunks before they are stored: the runtime passes the guard's
# injection screening, which keeps a verdict for each text where the requests that retrieve it read it.
ScreenChunks = Callable[[list[str]], object]


class SourceDocument(Protocol):
    """A document as a job holds it (the ingestion jobs' `NewDocument`), without its tenant."""

    @property
    def source(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def doc_type(self) -> str | None: ...
    @property
    def meta(self) -> dict[str, Any]: ...
    @property
    def acl(self) -> list[str]: ...


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
        screen: ScreenChunks | None = None,
    ) -> None:
        self._database = database
        self._screen = screen
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

    def queued_data(self, source: str, data: bytes, doc_type: str | None) -> bytes:
        """What a queue should store of a document until it is ingested: a binary file the database
        cannot scan for personal data (PDF) becomes its loader's text form; anything else as it is."""
        try:
            loader = self._loaders.for_document(source, doc_type)
        except KeelError:
            return data  # the job reports the unsupported type
        if isinstance(loader, TextLayered):
            return loader.text_layer(data, source=source) or data
        return data

    def ingest(self, request: IngestRequest) -> IngestResult:
        """Stores one document."""
        result = self.ingest_batch([request])[0]
        if isinstance(result, KeelError):
            raise result
        return result

    def ingest_sources(
        self, tenant: str, documents: Sequence[SourceDocument], done: Callable[[Session, int, str, str], None]
    ) -> list[IngestResult | KeelError]:
        """`ingest_batch` for documents as a job holds them, all of one tenant; `done` hears of each stored
        one (the transaction, its position, its id and outcome), as the ingestion jobs ask."""
        requests = [
            IngestRequest(tenant, d.source, d.data, d.doc_type, dict(d.meta), list(d.acl)) for d in documents
        ]
        return self.ingest_batch(
            requests, lambda s, i, result: done(s, i, result.document_id, result.outcome)
        )

    def ingest_batch(
        self, requests: list[IngestRequest], on_stored: OnStored | None = None
    ) -> list[IngestResult | KeelError]:
        """Loads every document, embeds all new chunks in shared batches, then stores each document in a
        transaction of its own. A bad document yields its error in place; the others go on."""
        results: list[IngestResult | KeelError | None] = [None] * len(requests)
        prepared: list[tuple[int, DocumentInput, list[str]]] = []
        for position, request in enumerate(requests):
            try:
                document = self._load(request)
            except KeelError as exc:
                results[position] = exc
                continue
            unchanged = self._unchanged(document, position, on_stored)
            if unchanged is not None:
                results[position] = unchanged
                continue
            texts = [index_text(document.title, " > ".join(c.heading_path), c.text) for c in document.chunks]
            prepared.append((position, document, texts))
        # Embedding is the slow part: it runs outside any write transaction, through the cache.
        vectors = self._embed(prepared)
        if self._screen is not None and prepared:
            # Also outside any transaction, and before the chunks can be retrieved: a request then
            # finds each one's verdict. A text screened before (an unchanged chunk) is not screened again.
            try:
                self._screen([chunk.text for _, document, _ in prepared for chunk in document.chunks])
            except (KeelError, SQLAlchemyError) as exc:
                # The documents are stored all the same; the catch-up job screens their chunks later, and
                # until then a reply screens them itself.
                log.warning("ingestion_screening_failed", error=type(exc).__name__)
        changed: set[str] = set()
        # One transaction for the batch (commits are costly), one savepoint per document: a document that
        # cannot be stored fails alone, and each stored one commits together with what `on_stored` records.
        with self._database.session() as session:
            for (position, document, texts), document_vectors in zip(prepared, vectors, strict=True):
                try:
                    with session.begin_nested():
                        result = self._store(session, document, texts, document_vectors)
                        if on_stored is not None:
                            on_stored(session, position, result)
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

    def _unchanged(
        self, document: DocumentInput, position: int, on_stored: OnStored | None
    ) -> IngestResult | None:
        with self._database.session() as session:
            existing = find_document(session, document.tenant, document.source)
            if existing is None or not is_unchanged(existing, document):
                return None
            result = IngestResult(existing.id, "unchanged", 0)
            if on_stored is not None:
                on_stored(session, position, result)
            return result

    def _store(
        self,
        session: Session,
        document: DocumentInput,
        texts: list[str],
        vectors: npt.NDArray[np.float32],
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
