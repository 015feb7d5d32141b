"""Keel's store on PostgreSQL: migrations, embedding cache, budget ledger and what only PostgresIndex does."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from keel.config import BudgetSettings, GatewaySettings
from keel.errors import RateLimitError
from keel.gateway.budgets import BudgetLedger, Reservation
from keel.knowledge.embedding_cache import CachedEmbedder
from keel.knowledge.index.base import IndexEntry, SearchScope
from keel.knowledge.index.postgres import PostgresIndex
from keel.store.engine import Database
from keel.store.migrate import alembic_config
from keel.store.models import Base, BudgetCounter


@pytest.fixture
def database(postgres_url: str) -> Iterator[Database]:
    database = Database(postgres_url)
    database.migrate(embedding_dimensions=4)  # the knowledge index of test_postgres_index_specifics
    yield database
    database.dispose()


def test_migrations_reach_head_and_are_idempotent(database: Database) -> None:
    database.migrate()
    head = ScriptDirectory.from_config(alembic_config(database.engine)).get_current_head()
    with database.session() as session:
        assert session.execute(text("SELECT version_num FROM alembic_version")).scalar() == head
    assert set(Base.metadata.tables) <= set(inspect(database.engine).get_table_names())


class CountingEmbedder:
    """Deterministic unit vectors from the text; records every batch it was asked to embed."""

    dimensions = 8
    model_id = "counting"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self._lock = threading.Lock()

    def embed(self, tenant: str, texts: list[str]) -> npt.NDArray[np.float32]:
        with self._lock:
            self.batches.append(list(texts))
        rows = [np.random.default_rng(sum(map(ord, t))).normal(size=self.dimensions) for t in texts]
        array = np.array(rows, dtype=np.float32).reshape(len(texts), self.dimensions)
        unit: npt.NDArray[np.float32] = array / np.linalg.norm(array, axis=1, keepdims=True)
        return unit

    async def aembed(self, tenant: str, texts: list[str]) -> npt.NDArray[np.float32]:
        return self.embed(tenant, texts)


def test_embedding_cache_embeds_each_text_once_across_replicas(database: Database) -> None:
    first_model, second_model = CountingEmbedder(), CountingEmbedder()
    first = CachedEmbedder(database, first_model)
    vectors = first.embed("acme", ["a", "b", "a"])
    assert first_model.batches == [["a", "b"]]
    assert vectors.shape == (3, 8) and np.array_equal(vectors[0], vectors[2])

    # A second replica finds what the first stored, bit for bit, and embeds only the new text.
    again = CachedEmbedder(database, second_model).embed("acme", ["b", "c"])
    assert second_model.batches == [["c"]]
    assert np.array_equal(again[0], vectors[1])
    assert first.embed("acme", []).shape == (0, 8)


def test_embedding_cache_tolerates_replicas_storing_the_same_texts_at_once(database: Database) -> None:
    texts = [f"text {i}" for i in range(30)]
    barrier = threading.Barrier(6)

    def embed_all(_: int) -> npt.NDArray[np.float32]:
        embedder = CachedEmbedder(database, CountingEmbedder(), batch_size=7)
        barrier.wait()
        return embedder.embed("acme", texts)

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(embed_all, range(6)))
    for result in results[1:]:
        assert np.array_equal(result, results[0])


def counters(database: Database) -> dict[tuple[str, str], tuple[int, int]]:
    with database.session() as session:
        rows = session.execute(select(BudgetCounter)).scalars()
        return {(row.scope, row.period): (row.spent_micros, row.reserved_micros) for row in rows}


def test_budget_reserve_settle_and_refuse(database: Database) -> None:
    ledger = BudgetLedger(database, GatewaySettings(key_budget=BudgetSettings(daily=Decimal("1.00"))))
    reservations = [ledger.reserve("key1", "acme", Decimal("0.30")) for _ in range(3)]
    with pytest.raises(RateLimitError) as refused:
        ledger.reserve("key1", "acme", Decimal("0.30"))
    assert refused.value.code == "budget_exceeded"
    ledger.settle(reservations[0], Decimal("0.10"))  # frees 0.20 of the reservation
    ledger.reserve("key1", "acme", Decimal("0.30"))
    (spent, reserved), *_ = counters(database).values()
    assert (spent, reserved) == (100_000, 900_000)


def test_concurrent_reservations_never_exceed_the_limit(database: Database) -> None:
    settings = GatewaySettings(
        key_budget=BudgetSettings(daily=Decimal("0.50"), monthly=Decimal("5.00")),
        tenant_budget=BudgetSettings(daily=Decimal("1.00")),
    )
    ledger = BudgetLedger(database, settings)
    barrier = threading.Barrier(50)

    def reserve(i: int) -> Reservation | None:
        barrier.wait()
        try:
            # Five keys share the tenant's daily 1.00; each key alone could spend 0.50.
            return ledger.reserve(f"key{i % 5}", "acme", Decimal("0.05"))
        except RateLimitError:
            return None

    with ThreadPoolExecutor(50) as pool:
        reservations = [r for r in pool.map(reserve, range(50)) if r is not None]
    assert len(reservations) == 20  # exactly what the tenant's 1.00 holds, no more
    before = counters(database)
    assert [value for (scope, _), value in before.items() if scope == "tenant:acme"] == [(0, 1_000_000)]
    assert all(
        reserved <= 500_000 for (scope, _), (_, reserved) in before.items() if scope.startswith("key:")
    )

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(lambda r: ledger.settle(r, Decimal("0.01")), reservations))
    after = counters(database)
    assert [value for (scope, _), value in after.items() if scope == "tenant:acme"] == [(200_000, 0)]
    assert all(reserved == 0 for _, reserved in after.values())


def test_postgres_index_specifics(database: Database) -> None:
    index = PostgresIndex(database, 4)
    index.ensure_schema()
    vector = np.array([1, 0, 0, 0], dtype=np.float32)
    with database.session() as session:
        # PostgreSQL text cannot hold NUL; the index drops it rather than failing the document.
        index.add(session, [IndexEntry("c1", "d1", "acme", "faq", "kb", [], "bike\x00 brakes", vector)])
    assert [hit.chunk_id for hit in index.keyword_search("brakes", SearchScope("acme"), 5)] == ["c1"]
    # Unlike SQLite's fallback, a query of stopwords alone finds nothing (the english config drops them).
    assert index.keyword_search("the of", SearchScope("acme"), 5) == []
    with pytest.raises(ValueError, match="dimensions"), database.session() as session:
        index.add(session, [IndexEntry("c2", "d1", "acme", "faq", "kb", [], "x", np.ones(3, np.float32))])
    with pytest.raises(ValueError, match=r"vector\(4\)"):
        PostgresIndex(database, 8).ensure_schema()
