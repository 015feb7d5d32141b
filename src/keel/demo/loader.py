"""(Re)loads the demo data idempotently: unchanged records stay as they are, changed ones are updated."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from decimal import Decimal
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keel.knowledge.chunking.markdown import chunk_markdown, markdown_title
from keel.knowledge.chunking.types import ChunkDraft
from keel.knowledge.documents import DocumentInput, upsert_document
from keel.store.engine import Database
from keel.store.models import Customer, Order, Ticket

DEMO_TENANT = "demo"
_DATA = resources.files("keel.demo") / "data"


def load_demo(database: Database, tenant: str = DEMO_TENANT) -> Counter[str]:
    """Returns counts such as `articles_created`, `tickets_unchanged`, `customers`."""
    counts: Counter[str] = Counter()
    crm = json.loads((_DATA / "crm.json").read_text())
    tickets = json.loads((_DATA / "tickets.json").read_text())
    with database.session() as session:
        customer_ids = {
            row["external_id"]: _upsert_customer(session, tenant, row) for row in crm["customers"]
        }
        counts["customers"] = len(customer_ids)
        for row in crm["orders"]:
            _upsert_order(session, tenant, row, customer_ids[row["customer"]])
        counts["orders"] = len(crm["orders"])
        for article in sorted((_DATA / "articles").iterdir(), key=lambda entry: entry.name):
            text = article.read_text()
            _, outcome = upsert_document(
                session,
                DocumentInput(
                    tenant=tenant,
                    source=f"help-center/{article.name}",
                    title=markdown_title(text),
                    doc_type="markdown",
                    text=text,
                    chunks=chunk_markdown(text),
                ),
            )
            counts[f"articles_{outcome}"] += 1
        for row in tickets:
            _upsert_ticket(session, tenant, row, customer_ids.get(row["customer"]))
            _, outcome = upsert_document(session, _ticket_document(tenant, row))
            counts[f"tickets_{outcome}"] += 1
    return counts


def _ticket_document(tenant: str, row: dict[str, Any]) -> DocumentInput:
    thread = "\n".join(f"{message['from']}: {message['text']}" for message in row["messages"])
    text = f"{row['subject']}\n\n{thread}"
    meta = {"ticket_id": row["external_id"], "customer": row["customer"], "status": row["status"]}
    return DocumentInput(
        tenant=tenant,
        source=f"tickets/{row['external_id']}",
        title=row["subject"],
        doc_type="ticket",
        text=text,
        chunks=[ChunkDraft(text=text, heading_path=[row["subject"]], meta=meta)],
        meta=meta,
    )


def _upsert_customer(session: Session, tenant: str, row: dict[str, Any]) -> str:
    record = session.scalar(
        select(Customer).where(Customer.tenant == tenant, Customer.external_id == row["external_id"])
    ) or Customer(tenant=tenant, external_id=row["external_id"])
    record.name, record.email = row["name"], row["email"]
    record.plan, record.country = row["plan"], row["country"]
    session.add(record)
    session.flush()
    return record.id


def _upsert_order(session: Session, tenant: str, row: dict[str, Any], customer_id: str) -> None:
    record = session.scalar(
        select(Order).where(Order.tenant == tenant, Order.external_id == row["external_id"])
    ) or Order(tenant=tenant, external_id=row["external_id"])
    record.customer_id = customer_id
    record.status, record.currency, record.items = row["status"], row["currency"], row["items"]
    record.total = Decimal(row["total"])
    record.placed_at = datetime.fromisoformat(row["placed_at"])
    session.add(record)


def _upsert_ticket(session: Session, tenant: str, row: dict[str, Any], customer_id: str | None) -> None:
    record = session.scalar(
        select(Ticket).where(Ticket.tenant == tenant, Ticket.external_id == row["external_id"])
    ) or Ticket(tenant=tenant, external_id=row["external_id"])
    record.customer_id = customer_id
    record.subject, record.status, record.messages = row["subject"], row["status"], row["messages"]
    record.created_at = datetime.fromisoformat(row["created_at"])
    session.add(record)
