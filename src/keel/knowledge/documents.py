"""Documents and their chunks in the relational store: find one, replace its chunks, delete it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from keel.knowledge.chunking.types import ChunkDraft
from keel.store.digests import text_digest as content_hash
from keel.store.models import Chunk, Document


@dataclass(frozen=True)
class DocumentInput:
    tenant: str
    source: str
    title: str
    doc_type: str
    text: str
    chunks: list[ChunkDraft]
    meta: dict[str, Any] = field(default_factory=dict)
    acl: list[str] = field(default_factory=list)

    @property
    def content_hash(self) -> str:
        return content_hash(self.text)


UpsertOutcome = Literal["created", "updated", "unchanged"]


def find_document(session: Session, tenant: str, source: str) -> Document | None:
    return session.scalar(select(Document).where(Document.tenant == tenant, Document.source == source))


def is_unchanged(existing: Document | None, document: DocumentInput) -> bool:
    return (
        existing is not None
        and existing.content_hash == document.content_hash
        and sorted(existing.acl) == sorted(document.acl)
        and existing.meta == document.meta
    )


def upsert_document(session: Session, document: DocumentInput) -> tuple[Document, list[Chunk], UpsertOutcome]:
    """Within the caller's transaction, so a changed document's chunks are replaced atomically."""
    existing = find_document(session, document.tenant, document.source)
    if existing is not None and is_unchanged(existing, document):
        return existing, [], "unchanged"
    if existing is None:
        record = Document(tenant=document.tenant, source=document.source)
        session.add(record)
        outcome: UpsertOutcome = "created"
    else:
        record = existing
        session.execute(delete(Chunk).where(Chunk.document_id == record.id))
        outcome = "updated"
    record.title = document.title
    record.doc_type = document.doc_type
    record.content_hash = document.content_hash
    record.meta = document.meta
    record.acl = sorted(document.acl)
    session.flush()
    chunks = [
        Chunk(
            document_id=record.id,
            tenant=document.tenant,
            ordinal=ordinal,
            text=draft.text,
            heading_path=" > ".join(draft.heading_path),
            content_hash=content_hash(draft.text),
            meta=draft.meta,
        )
        for ordinal, draft in enumerate(document.chunks)
    ]
    session.add_all(chunks)
    session.flush()
    return record, chunks, outcome
