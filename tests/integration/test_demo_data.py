"""The demo company's data loads through real ingestion into a real SQLite database, idempotently."""

from __future__ import annotations

from sqlalchemy import func, select

from keel.demo.loader import load_demo
from keel.runtime import Runtime
from keel.store.models import Chunk, Customer, Document, Order, Ticket


def count(runtime: Runtime, model: type, tenant: str) -> int:
    with runtime.database.session() as session:
        query = select(func.count()).select_from(model).where(model.tenant == tenant)  # type: ignore[attr-defined]
        return int(session.scalar(query) or 0)


def test_demo_loads_once_and_reloads_as_a_no_op(runtime: Runtime, client: object) -> None:
    first = load_demo(runtime.database, runtime.ingestion, tenant="demo-a")
    assert first["articles_created"] >= 5 and first["tickets_created"] == 1
    sizes = {model: count(runtime, model, "demo-a") for model in (Document, Chunk, Customer, Order, Ticket)}
    with runtime.database.session() as session:
        chunk_ids = set(session.scalars(select(Chunk.id).where(Chunk.tenant == "demo-a")))
    second = load_demo(runtime.database, runtime.ingestion, tenant="demo-a")
    assert second["articles_unchanged"] == first["articles_created"]
    assert "articles_created" not in second and "articles_updated" not in second
    assert {model: count(runtime, model, "demo-a") for model in sizes} == sizes
    with runtime.database.session() as session:
        assert set(session.scalars(select(Chunk.id).where(Chunk.tenant == "demo-a"))) == chunk_ids


def test_demo_chunks_keep_heading_paths_and_tenant(runtime: Runtime, client: object) -> None:
    load_demo(runtime.database, runtime.ingestion, tenant="demo-b")
    with runtime.database.session() as session:
        chunk = session.scalar(
            select(Chunk)
            .join(Document, Document.id == Chunk.document_id)
            .where(
                Chunk.tenant == "demo-b",
                Document.source == "help-center/returns-and-refunds.md",
                Chunk.text.contains("prepaid return label"),
            )
        )
        assert chunk is not None
        assert chunk.heading_path.startswith("Returns and refunds")
        tickets = session.scalar(
            select(Document).where(Document.tenant == "demo-b", Document.doc_type == "ticket")
        )
        assert tickets is not None and tickets.acl == ["support"]
