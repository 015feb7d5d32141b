"""The index contract shared by the SQLite and PostgreSQL implementations.

Writes happen inside the caller's transaction (the session that stores the document and its chunks),
so a document and its index entries change together or not at all. Searches apply the tenant, ACL and
metadata filters inside the query, before ranking: a caller never sees a chunk outside its scope, and
filters never shrink a result list after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session


@dataclass(frozen=True)
class IndexEntry:
    chunk_id: str
    document_id: str
    tenant: str
    doc_type: str
    source: str
    acl: list[str]
    text: str
    vector: npt.NDArray[np.float32]


@dataclass(frozen=True)
class SearchScope:
    """Who is asking and what they may see. `acl_groups=None` means every chunk of the tenant."""

    tenant: str
    acl_groups: frozenset[str] | None = None
    doc_types: frozenset[str] = field(default_factory=frozenset)
    document_ids: frozenset[str] = field(default_factory=frozenset)
    source_prefix: str | None = None


@dataclass(frozen=True)
class Hit:
    chunk_id: str
    score: float


class KnowledgeIndex(Protocol):
    def ensure_schema(self) -> None:
        """Checks that the migrations made this index's tables, fit for it; raises ValueError saying how."""
        ...

    def add(self, session: Session, entries: list[IndexEntry]) -> None: ...

    def remove_document(self, session: Session, tenant: str, document_id: str) -> None: ...

    def keyword_search(self, query: str, scope: SearchScope, k: int) -> list[Hit]: ...

    def vector_search(self, vector: npt.NDArray[np.float32], scope: SearchScope, k: int) -> list[Hit]: ...
