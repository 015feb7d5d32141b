"""(Re)loads the demo data idempotently: unchanged records stay as they are, changed ones are updated.

Articles and tickets go through the same ingestion as any upload (loaders, embeddings, index); the CRM
records are written to their tables.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from decimal import Decimal
from importlib import resources
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from keel.knowledge.ingestion import Ingestion, IngestRequest
from keel.store.engine import Database
from keel.store.models import Customer, Order, Ticket

DEMO_TENANT = "demo"
_DATA = resources.files("keel.demo") / "data"


def load_demo(database: Database, ingestion: Ingestion, tenant: str = DEMO_TENANT) -> Counter[str]:
    """Returns counts such as `articles_created`, `tickets_unchanged`, `customers`."""
    counts: Counter[str] = Counter()
    crm = json.loads((_DATA / "crm.json").read_text())
    tickets_file = _DATA / "tickets.json"
    tickets = json.loads(tickets_file.read_text())
    with database.session() as session:
        customer_ids = {
            row["external_id"]: _upsert_customer(session, tenant, row) for row in crm["customers"]
        }
        for row in crm["orders"]:
            _upsert_order(session, tenant, row, customer_ids[row["customer"]])
        for row in tickets:
            _upsert_ticket(session, tenant, row, customer_ids.get(row["customer"]))
    counts["customers"], counts["orders"] = len(customer_ids), len(crm["orders"])
    for article in sorted((_DATA / "articles").iterdir(), key=lambda entry: entry.name):
        result = ingestion.ingest(
            IngestRequest(tenant=tenant, source=f"help-center/{article.name}", data=article.read_bytes())
        )
        counts[f"articles_{result.outcome}"] += 1
    result = ingestion.ingest(
        IngestRequest(
            tenant=tenant,
            source="tickets/history.tickets.json",
            data=tickets_file.read_bytes(),
            doc_type="ticket",
            # Past tickets hold customers' words: only support staff's searches see them.
            acl=["support"],
        )
    )
    counts[f"tickets_{result.outcome}"] += 1
    return counts


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
