"""Stores documents with their chunks; unchanged content is a no-op, changed content replaces its chunks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from keel.knowledge.chunking.types import ChunkDraft
from keel.store.models import Chunk, Document


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


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


UpsertOutcome = Literal["created", "updated", "unchanged"]


def upsert_document(session: Session, document: DocumentInput) -> tuple[Document, UpsertOutcome]:
    """Within the caller's transaction, so a changed document's chunks are replaced atomically."""
    digest = content_hash(document.text)
    existing = session.scalar(
        select(Document).where(Document.tenant == document.tenant, Document.source == document.source)
    )
    if existing is not None and existing.content_hash == digest and existing.acl == document.acl:
        return existing, "unchanged"
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
    record.content_hash = digest
    record.meta = document.meta
    record.acl = document.acl
    session.flush()
    session.add_all(
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
    )
    return record, outcome
