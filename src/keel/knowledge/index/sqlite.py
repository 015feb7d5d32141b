"""The embedded index: SQLite FTS5 (BM25) for keywords, exact cosine search over vectors kept in SQLite.

Vectors live in a table of the same database (so they commit with their chunks) and are searched as
one in-memory numpy matrix per tenant, brought up to date when the tenant's index generation changes
(any process that writes bumps it): rows added since are appended, and only a removal since (a deleted
or replaced document) reloads the whole matrix. Exact search over 100k x 384 reads the whole matrix
(~150 MB), about 10-30 ms on two cores (bench/retrieval_scale.py): faster than sqlite-vec's brute
force, with no second SQLite build in the process.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import BindParameter, Row, bindparam, text
from sqlalchemy.orm import Session

from keel.knowledge.index.base import Hit, IndexEntry, SearchScope
from keel.store.engine import Database

_STATE = text("SELECT generation, removals FROM index_generation WHERE tenant = :tenant")
_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common to rank by; dropping them keeps OR queries small on large corpora.
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "this",
        "to",
        "was",
        "were",
        "will",
        "with",
    ]
)


def keyword_query(query: str) -> str | None:
    """Any of the query's words, each quoted so FTS5 syntax in user text is inert."""
    words = [w for w in dict.fromkeys(_WORD.findall(query.lower())) if w not in _STOPWORDS]
    if not words:
        words = list(dict.fromkeys(_WORD.findall(query.lower())))
    return " OR ".join(f'"{w}"' for w in words) if words else None


@dataclass
class _TenantMatrix:
    generation: int
    removals: int
    last_rowid: int
    chunk_ids: list[str]
    # The first len(chunk_ids) rows of `buffer`, which has room to grow: an append copies only new rows.
    matrix: npt.NDArray[np.float32]
    buffer: npt.NDArray[np.float32]
    document_ids: list[str]
    doc_types: list[str]
    sources: list[str]
    acls: list[frozenset[str]]


class SqliteIndex:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._matrices: dict[str, _TenantMatrix] = {}
        self._lock = threading.Lock()

    def ensure_schema(self) -> None:
        """Checks that the migrations made the index tables (revision 0012: `keel db upgrade`)."""
        with self._database.reading() as session:
            tables = set(session.scalars(text("SELECT name FROM sqlite_master WHERE type = 'table'")))
        missing = {"chunk_fts", "chunk_vectors", "index_generation"} - tables
        if missing:
            raise ValueError(
                f"The knowledge index tables {sorted(missing)} are missing: run `keel db upgrade`."
            )

    # -- writes, in the caller's transaction ----------------------------------------------------

    def add(self, session: Session, entries: list[IndexEntry]) -> None:
        if not entries:
            return
        rows = [
            {
                "chunk_id": e.chunk_id,
                "document_id": e.document_id,
                "tenant": e.tenant,
                "doc_type": e.doc_type,
                "source": e.source,
                "acl": json.dumps(sorted(e.acl)),
                "text": e.text,
                "vector": np.asarray(e.vector, dtype="<f4").tobytes(),
            }
            for e in entries
        ]
        # FTS5 has no primary key: remove an earlier copy so a re-add replaces, as the vectors do. That
        # DELETE scans the whole FTS table, so it runs only when the (indexed) vectors hold a copy — new
        # chunks, nearly every add, skip it and ingestion stays flat as the index grows.
        ids = [e.chunk_id for e in entries]
        present = session.execute(
            text("SELECT 1 FROM chunk_vectors WHERE chunk_id IN :ids LIMIT 1").bindparams(
                bindparam("ids", expanding=True)
            ),
            {"ids": ids},
        ).first()
        replaced = present is not None
        if replaced:
            session.execute(
                text("DELETE FROM chunk_fts WHERE chunk_id IN :ids").bindparams(
                    bindparam("ids", expanding=True)
                ),
                {"ids": ids},
            )
        session.execute(
            text(
                "INSERT INTO chunk_fts (text, chunk_id, document_id, tenant, doc_type, source, acl) "
                "VALUES (:text, :chunk_id, :document_id, :tenant, :doc_type, :source, :acl)"
            ),
            rows,
        )
        session.execute(
            text(
                "INSERT OR REPLACE INTO chunk_vectors "
                "(chunk_id, document_id, tenant, doc_type, source, acl, vector) "
                "VALUES (:chunk_id, :document_id, :tenant, :doc_type, :source, :acl, :vector)"
            ),
            rows,
        )
        for tenant in {e.tenant for e in entries}:
            # INSERT OR REPLACE deletes the earlier row: a removal, as far as the cached matrix knows.
            self._bump(session, tenant, removed=replaced)

    def remove_document(self, session: Session, tenant: str, document_id: str) -> None:
        params = {"document_id": document_id, "tenant": tenant}
        session.execute(
            text("DELETE FROM chunk_fts WHERE document_id = :document_id AND tenant = :tenant"), params
        )
        session.execute(
            text("DELETE FROM chunk_vectors WHERE document_id = :document_id AND tenant = :tenant"), params
        )
        self._bump(session, tenant, removed=True)

    def _bump(self, session: Session, tenant: str, *, removed: bool) -> None:
        session.execute(
            text(
                "INSERT INTO index_generation (tenant, generation, removals) "
                "VALUES (:tenant, 1, :removed) ON CONFLICT (tenant) "
                "DO UPDATE SET generation = generation + 1, removals = removals + :removed"
            ),
            {"tenant": tenant, "removed": int(removed)},
        )

    # -- searches -------------------------------------------------------------------------------

    def keyword_search(self, query: str, scope: SearchScope, k: int) -> list[Hit]:
        match = keyword_query(query)
        if match is None:
            return []
        clauses = ["chunk_fts MATCH :match", "tenant = :tenant"]
        params: dict[str, object] = {"match": match, "tenant": scope.tenant, "k": k}
        binds: list[BindParameter[Any]] = []
        if scope.acl_groups is not None:
            clauses.append(
                "(acl = '[]' OR EXISTS (SELECT 1 FROM json_each(chunk_fts.acl) WHERE value IN :groups))"
            )
            params["groups"] = sorted(scope.acl_groups) or [""]
            binds.append(bindparam("groups", expanding=True))
        if scope.doc_types:
            clauses.append("doc_type IN :doc_types")
            params["doc_types"] = sorted(scope.doc_types)
            binds.append(bindparam("doc_types", expanding=True))
        if scope.document_ids:
            clauses.append("document_id IN :document_ids")
            params["document_ids"] = sorted(scope.document_ids)
            binds.append(bindparam("document_ids", expanding=True))
        if scope.source_prefix:
            clauses.append("substr(source, 1, length(:prefix)) = :prefix")
            params["prefix"] = scope.source_prefix
        statement = text(
            # `rank` is FTS5's bm25(); ordering by it lets SQLite stop after k rows instead of reading
            # every matching row's stored columns first (2x faster at 100k chunks).
            f"SELECT chunk_id, -rank AS score FROM chunk_fts WHERE {' AND '.join(clauses)} "
            "ORDER BY rank LIMIT :k"
        ).bindparams(*binds)
        with self._database.reading() as session:
            return [Hit(row.chunk_id, float(row.score)) for row in session.execute(statement, params)]

    def vector_search(self, vector: npt.NDArray[np.float32], scope: SearchScope, k: int) -> list[Hit]:
        tenant = self._matrix(scope.tenant)
        if tenant is None or not tenant.chunk_ids:
            return []
        allowed = np.ones(len(tenant.chunk_ids), dtype=bool)
        filtered = bool(
            scope.acl_groups is not None or scope.doc_types or scope.document_ids or scope.source_prefix
        )
        if scope.acl_groups is not None:
            groups = scope.acl_groups
            allowed &= np.fromiter(
                (not acl or bool(acl & groups) for acl in tenant.acls), bool, len(tenant.acls)
            )
        if scope.doc_types:
            doc_types = scope.doc_types
            allowed &= np.fromiter((t in doc_types for t in tenant.doc_types), bool, len(tenant.doc_types))
        if scope.document_ids:
            wanted = scope.document_ids
            allowed &= np.fromiter((d in wanted for d in tenant.document_ids), bool, len(tenant.document_ids))
        if scope.source_prefix:
            prefix = scope.source_prefix
            allowed &= np.fromiter((s.startswith(prefix) for s in tenant.sources), bool, len(tenant.sources))
        count = int(allowed.sum()) if filtered else len(allowed)
        if count == 0:
            return []
        # Score every row in place and mask the disallowed ones: copying the allowed rows out first would
        # move the whole matrix (150 MB at 100k chunks) on every query.
        scores = tenant.matrix @ np.asarray(vector, dtype=np.float32)
        if filtered:
            scores = np.where(allowed, scores, -np.inf)
        top = min(k, count)
        best = np.argpartition(-scores, top - 1)[:top]
        best = best[np.argsort(-scores[best])]
        return [Hit(tenant.chunk_ids[i], float(scores[i])) for i in best]

    def _matrix(self, tenant: str) -> _TenantMatrix | None:
        with self._database.reading() as session:
            state = session.execute(_STATE, {"tenant": tenant}).first()
        if state is None:
            return None
        with self._lock:
            cached = self._matrices.get(tenant)
            if cached is not None and cached.generation == int(state.generation):
                return cached
            with self._database.reading() as session:
                state = session.execute(_STATE, {"tenant": tenant}).one()
                generation, removals = int(state.generation), int(state.removals)
                appending = cached is not None and cached.removals == removals
                after = cached.last_rowid if cached is not None and appending else -1
                rows = session.execute(
                    text(
                        # rowid order avoids sorting every row, vectors included, in a temporary B-tree.
                        "SELECT rowid, chunk_id, document_id, doc_type, source, acl, vector "
                        "FROM chunk_vectors WHERE tenant = :tenant AND rowid > :after ORDER BY rowid"
                    ),
                    {"tenant": tenant, "after": after},
                ).all()
                settled = session.execute(_STATE, {"tenant": tenant}).one()
            # A write that landed while the rows were read (SQLite reads see each statement's own
            # snapshot) leaves an impossible removals count: this search uses what it read, the next
            # one reloads from scratch.
            steady = (int(settled.generation), int(settled.removals)) == (generation, removals)
            loaded = _extend(cached if appending else None, rows, generation, removals if steady else -1)
            self._matrices[tenant] = loaded
            return loaded


_NO_VECTORS = np.zeros((0, 0), dtype=np.float32)


def _extend(
    cached: _TenantMatrix | None, rows: Sequence[Row[Any]], generation: int, removals: int
) -> _TenantMatrix:
    """A matrix with `rows` after the cached ones (none: a fresh load). Searches holding the cached
    matrix keep their view: new rows go into the buffer past its end, or into a new, larger buffer."""
    base = cached or _TenantMatrix(0, 0, -1, [], _NO_VECTORS, _NO_VECTORS, [], [], [], [])
    if not rows:
        return replace(base, generation=generation, removals=removals)
    new = np.frombuffer(b"".join(row.vector for row in rows), dtype="<f4").reshape(len(rows), -1)
    count = len(base.chunk_ids)
    buffer = base.buffer
    if buffer.shape[1] != new.shape[1] or buffer.shape[0] < count + len(new):
        # Room for half as much again, so that a stream of small appends copies the matrix rarely.
        buffer = np.empty(((count + len(new)) * 3 // 2 + 16, new.shape[1]), dtype=np.float32)
        if count:
            buffer[:count] = base.matrix
    buffer[count : count + len(new)] = new
    return _TenantMatrix(
        generation=generation,
        removals=removals,
        last_rowid=int(rows[-1].rowid),
        chunk_ids=base.chunk_ids + [row.chunk_id for row in rows],
        matrix=buffer[: count + len(new)],
        buffer=buffer,
        document_ids=base.document_ids + [row.document_id for row in rows],
        doc_types=base.doc_types + [row.doc_type for row in rows],
        sources=base.sources + [row.source for row in rows],
        acls=base.acls + [frozenset(json.loads(row.acl)) if row.acl != "[]" else frozenset() for row in rows],
    )
