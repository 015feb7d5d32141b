"""The demo company's data loads into a real SQLite database, idempotently."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from keel.demo.loader import load_demo
from keel.store.engine import Database
from keel.store.models import Chunk, Customer, Document, Order, Ticket


def count(database: Database, model: type) -> int:
    with database.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_demo_loads_once_and_reloads_as_a_no_op(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'demo.db'}")
    database.migrate()
    first = load_demo(database)
    assert first["articles_created"] >= 5 and first["tickets_created"] >= 3
    sizes = {model: count(database, model) for model in (Document, Chunk, Customer, Order, Ticket)}
    with database.session() as session:
        chunk_ids = set(session.scalars(select(Chunk.id)))
    second = load_demo(database)
    assert second["articles_unchanged"] == first["articles_created"]
    assert "articles_created" not in second and "articles_updated" not in second
    assert {model: count(database, model) for model in sizes} == sizes
    with database.session() as session:
        assert set(session.scalars(select(Chunk.id))) == chunk_ids


def test_demo_chunks_keep_heading_paths_and_tenant(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'demo.db'}")
    database.migrate()
    load_demo(database, tenant="larkspur")
    with database.session() as session:
        chunk = session.scalar(select(Chunk).where(Chunk.text.contains("prepaid return label")).limit(1))
        assert chunk is not None
        assert chunk.tenant == "larkspur"
        assert chunk.heading_path.startswith("Returns and refunds")
