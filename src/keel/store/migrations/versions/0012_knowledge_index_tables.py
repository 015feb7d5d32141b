"""knowledge index tables: SQLite FTS5 + vectors + generations; PostgreSQL chunk_index (full text + HNSW)

Earlier releases made these tables by hand at start; `IF NOT EXISTS` lets a database of theirs upgrade
in place, and one whose `index_generation` predates the removals count gains the column here.
PostgreSQL's vector size is the embedding model's: the caller passes it (`Database.migrate`); Alembic's
own command line, which cannot, gets the shipped model's 384.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 10:15:00.000000
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_DIMENSIONS = 384
# Serialises replicas upgrading at once (CREATE EXTENSION and CREATE INDEX can collide on the catalog).
SCHEMA_LOCK = 0x6B65656C_696E6478

SQLITE = [
    """CREATE VIRTUAL TABLE IF NOT EXISTS chunk_fts USING fts5(
        text, chunk_id UNINDEXED, document_id UNINDEXED, tenant UNINDEXED, doc_type UNINDEXED,
        source UNINDEXED, acl UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2')""",
    """CREATE TABLE IF NOT EXISTS chunk_vectors (
        chunk_id TEXT PRIMARY KEY, document_id TEXT NOT NULL, tenant TEXT NOT NULL,
        doc_type TEXT NOT NULL, source TEXT NOT NULL, acl TEXT NOT NULL, vector BLOB NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS ix_chunk_vectors_tenant ON chunk_vectors (tenant)",
    "CREATE INDEX IF NOT EXISTS ix_chunk_vectors_document ON chunk_vectors (document_id)",
    # `removals` counts removals apart from all writes: while it stands still, rows were only appended.
    """CREATE TABLE IF NOT EXISTS index_generation (
        tenant TEXT PRIMARY KEY, generation INTEGER NOT NULL, removals INTEGER NOT NULL DEFAULT 0)""",
]


def postgres(dimensions: int) -> list[str]:
    return [
        f"""CREATE TABLE IF NOT EXISTS chunk_index (
            chunk_id TEXT PRIMARY KEY,
            document_id TEXT NOT NULL,
            tenant TEXT NOT NULL,
            doc_type TEXT NOT NULL,
            source TEXT NOT NULL,
            acl TEXT[] NOT NULL DEFAULT '{{}}',
            text TEXT NOT NULL,
            tsv TSVECTOR GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED,
            embedding VECTOR({dimensions}) NOT NULL)""",
        "CREATE INDEX IF NOT EXISTS ix_chunk_index_tsv ON chunk_index USING gin (tsv)",
        "CREATE INDEX IF NOT EXISTS ix_chunk_index_embedding ON chunk_index "
        "USING hnsw (embedding vector_cosine_ops)",
        # Serves remove_document and lets the planner answer small tenants exactly, without HNSW.
        "CREATE INDEX IF NOT EXISTS ix_chunk_index_tenant_document ON chunk_index (tenant, document_id)",
    ]


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        for statement in SQLITE:
            op.execute(statement)
        columns = {row[1] for row in bind.execute(sa.text("PRAGMA table_info(index_generation)"))}
        if "removals" not in columns:
            op.execute("ALTER TABLE index_generation ADD COLUMN removals INTEGER NOT NULL DEFAULT 0")
        return
    config = op.get_context().config
    requested = config.attributes.get("embedding_dimensions") if config is not None else None
    dimensions = int(requested or DEFAULT_DIMENSIONS)
    bind.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
    version = sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
    # Skip CREATE EXTENSION when it exists, so a role without the right to create it can still upgrade.
    if bind.execute(version).scalar() is None:
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    found = bind.execute(version).scalar_one()
    if tuple(int(part) for part in re.findall(r"\d+", found)[:2]) < (0, 8):
        raise RuntimeError(
            f"pgvector 0.8 or later is needed (found {found}): iterative index scans keep filtered "
            "searches complete. Run ALTER EXTENSION vector UPDATE, then upgrade again."
        )
    for statement in postgres(dimensions):
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in ("index_generation", "chunk_vectors", "chunk_fts"):
            op.execute(f"DROP TABLE IF EXISTS {table}")
    else:
        op.execute("DROP TABLE IF EXISTS chunk_index")
