"""The knowledge index tables come from Alembic (revision 0012) on both engines: a fresh `keel db upgrade`
makes them, and a database whose index an earlier release made by hand upgrades in place, rows kept."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from sqlalchemy import text

from keel.knowledge.index.base import KnowledgeIndex, SearchScope
from keel.knowledge.index.postgres import PostgresIndex, vector_literal
from keel.knowledge.index.sqlite import SqliteIndex
from keel.store.engine import Database
from keel.store.migrate import alembic_config
from tests.integration.live import KEEL
from tests.services.test_index_contract import entry, unit_vectors

DIMS = 16
SHIPPED_DIMS = 384
ACME = SearchScope("acme")

# What releases before revision 0012 created at start, outside Alembic (index_generation without the
# removals count, as the first of them had it).
EARLIER_SQLITE = [
    """CREATE VIRTUAL TABLE chunk_fts USING fts5(
        text, chunk_id UNINDEXED, document_id UNINDEXED, tenant UNINDEXED, doc_type UNINDEXED,
        source UNINDEXED, acl UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2')""",
    """CREATE TABLE chunk_vectors (
        chunk_id TEXT PRIMARY KEY, document_id TEXT NOT NULL, tenant TEXT NOT NULL,
        doc_type TEXT NOT NULL, source TEXT NOT NULL, acl TEXT NOT NULL, vector BLOB NOT NULL)""",
    "CREATE INDEX ix_chunk_vectors_tenant ON chunk_vectors (tenant)",
    "CREATE INDEX ix_chunk_vectors_document ON chunk_vectors (document_id)",
    "CREATE TABLE index_generation (tenant TEXT PRIMARY KEY, generation INTEGER NOT NULL)",
    "INSERT INTO chunk_fts VALUES ('Refunds take five days', 'old1', 'd0', 'acme', 'faq', 'kb', '[]')",
    "INSERT INTO chunk_vectors VALUES ('old1', 'd0', 'acme', 'faq', 'kb', '[]', :vector)",
    "INSERT INTO index_generation VALUES ('acme', 7)",
]
EARLIER_POSTGRES = [
    "CREATE EXTENSION IF NOT EXISTS vector",
    f"""CREATE TABLE chunk_index (
        chunk_id TEXT PRIMARY KEY, document_id TEXT NOT NULL, tenant TEXT NOT NULL, doc_type TEXT NOT NULL,
        source TEXT NOT NULL, acl TEXT[] NOT NULL DEFAULT '{{}}', text TEXT NOT NULL,
        tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED,
        embedding VECTOR({DIMS}) NOT NULL)""",
    "CREATE INDEX ix_chunk_index_tsv ON chunk_index USING gin (tsv)",
    "CREATE INDEX ix_chunk_index_embedding ON chunk_index USING hnsw (embedding vector_cosine_ops)",
    "INSERT INTO chunk_index (chunk_id, document_id, tenant, doc_type, source, text, embedding) "
    "VALUES ('old1', 'd0', 'acme', 'faq', 'kb', 'Refunds take five days', CAST(:vector AS vector))",
]


@dataclass
class Engine:
    name: str
    url: str

    def index(self, database: Database, dimensions: int = DIMS) -> KnowledgeIndex:
        return SqliteIndex(database) if self.name == "sqlite" else PostgresIndex(database, dimensions)


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        yield Engine("sqlite", f"sqlite:///{tmp_path / 'keel.db'}")
    else:
        yield Engine("postgres", request.getfixturevalue("postgres_url"))


def test_an_index_made_by_an_earlier_release_upgrades_with_its_rows(engine: Engine) -> None:
    database = Database(engine.url)
    command.upgrade(alembic_config(database.engine), "0011")
    vector = unit_vectors(1, seed=5)[0]
    stored = (
        np.asarray(vector, dtype="<f4").tobytes() if engine.name == "sqlite" else vector_literal(vector, DIMS)
    )
    with database.session() as session:
        for statement in EARLIER_SQLITE if engine.name == "sqlite" else EARLIER_POSTGRES:
            session.execute(text(statement), {"vector": stored} if ":vector" in statement else {})
    database.migrate(embedding_dimensions=DIMS)
    index = engine.index(database)
    index.ensure_schema()
    assert [hit.chunk_id for hit in index.keyword_search("refund", ACME, 5)] == ["old1"]
    assert index.vector_search(vector, ACME, 1)[0].chunk_id == "old1"
    with database.session() as session:
        index.add(session, [entry("new1", "Refund forms are online", document_id="d1")])
        index.remove_document(session, "acme", "d0")
    assert [hit.chunk_id for hit in index.keyword_search("refund", ACME, 5)] == ["new1"]
    if engine.name == "sqlite":
        with database.reading() as session:
            row = session.execute(text("SELECT generation, removals FROM index_generation")).one()
        assert row.generation > 7 and row.removals == 1
    database.dispose()


def test_keel_db_upgrade_makes_the_index_tables(engine: Engine, tmp_path: Path) -> None:
    env = {**os.environ, "KEEL_DATA_DIR": str(tmp_path / "data"), "KEEL_LOG_LEVEL": "warning"}
    if engine.name == "postgres":
        env["KEEL_DATABASE_URL"] = engine.url
    else:
        (tmp_path / "data").mkdir()
        engine.url = f"sqlite:///{tmp_path / 'data' / 'keel.db'}"
    subprocess.run([*KEEL, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=120)
    database = Database(engine.url)
    # Sized for the configured (shipped) embedding model.
    index = engine.index(database, SHIPPED_DIMS)
    index.ensure_schema()
    if engine.name == "postgres":
        with pytest.raises(ValueError, match=r"vector\(384\)"):
            PostgresIndex(database, DIMS).ensure_schema()
    database.dispose()


def test_an_index_without_its_migration_says_how_to_make_it(engine: Engine) -> None:
    database = Database(engine.url)
    command.upgrade(alembic_config(database.engine), "0011")
    with pytest.raises(ValueError, match="keel db upgrade"):
        engine.index(database).ensure_schema()
    database.dispose()
