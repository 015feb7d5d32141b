"""Embeds texts through a cache keyed by model and text hash, in batches; only misses reach the model
(and only they are metered)."""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from keel.knowledge.embeddings import TenantEmbeddings
from keel.store.engine import Database
from keel.store.models import EmbeddingCacheEntry

# Bound parameters per lookup query stay well under every database's limit.
_LOOKUP_BATCH = 500


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class CachedEmbedder:
    def __init__(self, database: Database, provider: TenantEmbeddings, *, batch_size: int = 64) -> None:
        self._database = database
        self._provider = provider
        self._batch_size = batch_size

    def embed(self, tenant: str, texts: list[str]) -> npt.NDArray[np.float32]:
        """Unit vectors, one row per text, in order; the misses are embedded for `tenant`. Returns (0, d)
        for no texts."""
        model = self._provider.model_id
        keys = [text_key(t) for t in texts]
        found = self._lookup(model, sorted(set(keys)))
        missing = [i for i, key in enumerate(keys) if key not in found]
        # Same text twice in one call: embed it once.
        unique_missing = list(dict.fromkeys(keys[i] for i in missing))
        first_text = {keys[i]: texts[i] for i in reversed(missing)}
        for start in range(0, len(unique_missing), self._batch_size):
            batch = unique_missing[start : start + self._batch_size]
            vectors = self._provider.embed(tenant, [first_text[key] for key in batch])
            fresh = dict(zip(batch, vectors, strict=True))
            self._store(model, fresh)
            found.update(fresh)
        if not texts:
            return np.zeros((0, self._provider.dimensions), dtype=np.float32)
        return np.stack([found[key] for key in keys]).astype(np.float32)

    def _lookup(self, model: str, keys: list[str]) -> dict[str, npt.NDArray[np.float32]]:
        found: dict[str, npt.NDArray[np.float32]] = {}
        with self._database.reading() as session:
            for start in range(0, len(keys), _LOOKUP_BATCH):
                rows = session.execute(
                    select(EmbeddingCacheEntry.text_hash, EmbeddingCacheEntry.vector).where(
                        EmbeddingCacheEntry.model == model,
                        EmbeddingCacheEntry.text_hash.in_(keys[start : start + _LOOKUP_BATCH]),
                    )
                )
                found.update({row.text_hash: np.frombuffer(row.vector, dtype="<f4") for row in rows})
        return found

    def _store(self, model: str, vectors: dict[str, npt.NDArray[np.float32]]) -> None:
        rows = [
            {"model": model, "text_hash": key, "vector": np.asarray(v, dtype="<f4").tobytes()}
            for key, v in vectors.items()
        ]
        insert = postgresql.insert if not self._database.is_sqlite else sqlite.insert
        statement = insert(EmbeddingCacheEntry).on_conflict_do_nothing()
        with self._database.session() as session:
            session.execute(statement, rows)
