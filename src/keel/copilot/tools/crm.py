"""CRM tools: a customer's record, their orders, their ticket history (always within the tenant)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select

from keel.copilot.tools.base import Tool
from keel.store.engine import Database
from keel.store.models import Customer, Order, Ticket


class CustomerArgs(BaseModel):
    customer_id: str = Field(min_length=1, max_length=64, description="The customer's CRM id, e.g. C-1001.")


class OrdersArgs(CustomerArgs):
    limit: int = Field(5, ge=1, le=20)


def crm_tools(database: Database) -> list[Tool[Any]]:
    def find_customer(session: Any, tenant: str, external_id: str) -> Customer | None:
        return session.scalar(  # type: ignore[no-any-return]
            select(Customer).where(Customer.tenant == tenant, Customer.external_id == external_id)
        )

    def lookup_customer(tenant: str, args: CustomerArgs) -> dict[str, Any] | None:
        with database.session() as session:
            customer = find_customer(session, tenant, args.customer_id)
            if customer is None:
                return None
            return {
                "customer_id": customer.external_id,
                "name": customer.name,
                "plan": customer.plan,
                "country": customer.country,
            }

    def lookup_orders(tenant: str, args: OrdersArgs) -> list[dict[str, Any]]:
        with database.session() as session:
            customer = find_customer(session, tenant, args.customer_id)
            if customer is None:
                return []
            orders = session.scalars(
                select(Order)
                .where(Order.customer_id == customer.id)
                .order_by(Order.placed_at.desc())
                .limit(args.limit)
            )
            return [
                {
                    "order_id": o.external_id,
                    "status": o.status,
                    "total": str(o.total),
                    "currency": o.currency,
                    "items": [i.get("name") for i in o.items],
                    "placed_at": o.placed_at.date().isoformat(),
                }
                for o in orders
            ]

    def ticket_history(tenant: str, args: OrdersArgs) -> list[dict[str, Any]]:
        with database.session() as session:
            customer = find_customer(session, tenant, args.customer_id)
            if customer is None:
                return []
            tickets = session.scalars(
                select(Ticket)
                .where(Ticket.customer_id == customer.id)
                .order_by(Ticket.created_at.desc())
                .limit(args.limit)
            )
            return [
                {
                    "ticket_id": t.external_id,
                    "subject": t.subject,
                    "status": t.status,
                    "last_message": t.messages[-1]["text"] if t.messages else "",
                }
                for t in tickets
            ]

    return [
        Tool(
            "lookup_customer",
            "The customer's CRM record: name, plan, country.",
            CustomerArgs,
            lookup_customer,
        ),
        Tool(
            "lookup_orders", "The customer's latest orders with status and items.", OrdersArgs, lookup_orders
        ),
        Tool("ticket_history", "The customer's past support tickets.", OrdersArgs, ticket_history),
    ]
