"""The document catalog: what a tenant's knowledge base holds (for the API and the dashboard), and the
audited deletion of a document."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Select, func, select

from keel.errors import NotFoundError
from keel.governance.audit import AuditLog
from keel.knowledge.ingestion import Ingestion
from keel.store.engine import Database
from keel.store.models import Chunk, Document


class DocumentSummary(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    source: str
    title: str
    doc_type: str
    acl: list[str]
    metadata: dict[str, Any]
    chunks: int
    content_hash: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DocumentPage:
    documents: list[DocumentSummary]
    # Every document that matched, not only this page's.
    total: int


class DocumentCatalog:
    def __init__(self, database: Database, ingestion: Ingestion, audit: AuditLog) -> None:
        self._database = database
        self._ingestion = ingestion
        self._audit = audit

    def page(
        self,
        tenant: str,
        *,
        limit: int,
        offset: int = 0,
        doc_type: str | None = None,
        order: Literal["source", "recent"] = "source",
    ) -> DocumentPage:
        """A page of the tenant's documents, by source (the API) or most recently changed first."""
        query = select(Document).where(Document.tenant == tenant)
        if doc_type:
            query = query.where(Document.doc_type == doc_type)
        with self._database.reading() as session:
            total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        ordering = Document.source if order == "source" else Document.updated_at.desc()
        return DocumentPage(self._summaries(query.order_by(ordering).limit(limit).offset(offset)), total)

    def get(self, tenant: str, document_id: str) -> DocumentSummary:
        found = self._summaries(select(Document).where(Document.id == document_id, Document.tenant == tenant))
        if not found:
            raise NotFoundError(f"No document '{document_id}'.", code="document_not_found")
        return found[0]

    def delete(self, tenant: str, document_id: str, *, actor: str) -> None:
        """Removes the document and its chunks from every index, and audits it."""
        self._ingestion.delete(tenant, document_id)
        self._audit.append(tenant, actor, "document.delete", document_id)

    def _summaries(self, query: Select[Document]) -> list[DocumentSummary]:
        counts = select(Chunk.document_id, func.count().label("n")).group_by(Chunk.document_id).subquery()
        with self._database.reading() as session:
            rows = session.execute(
                query.add_columns(func.coalesce(counts.c.n, 0)).outerjoin(
                    counts, counts.c.document_id == Document.id
                )
            ).all()
        return [
            DocumentSummary(
                id=d.id,
                source=d.source,
                title=d.title,
                doc_type=d.doc_type,
                acl=list(d.acl),
                metadata=dict(d.meta),
                chunks=n,
                content_hash=d.content_hash,
                created_at=d.created_at,
                updated_at=d.updated_at,
            )
            for d, n in rows
        ]
