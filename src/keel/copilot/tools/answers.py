"""Answers from the CRM tools' results: a customer's orders, account and tickets, stated as the records
hold them and cited as records. A question about *their* order is answered from their orders, not from
help-centre prose about orders in general."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from keel.copilot.types import Citation

_ORDER_ID = re.compile(r"\b[A-Z]{2,4}-\d{3,}\b")
_ABOUT_ORDERS = re.compile(
    r"\b(?:my|our)\s+(?:[\w-]+\s+){0,2}?(?:orders?|deliver(?:y|ies)|packages?|parcels?|shipments?|"
    r"purchases?|items?|(?:e-)?bikes?|locks?)\b|\bwhere is (?:it|my)\b|\btrack(?:ing)?\b",
    re.I,
)
_ABOUT_TICKETS = re.compile(
    r"\b(?:my|our)\s+(?:[\w-]+\s+)?(?:tickets?|requests?|complaints?|cases?|claims?|enquir(?:y|ies))\b", re.I
)
_ABOUT_ACCOUNT = re.compile(
    r"\b(?:my|our)\s+(?:plan|subscription|account|membership|care plan|customer record)\b|"
    r"\bam i (?:on|subscribed|a member|covered|signed up)\b|\bwhich plan\b|\bwhat plan\b",
    re.I,
)
ORDER_INTENTS = frozenset({"order_status", "shipping"})


@dataclass(frozen=True)
class RecordAnswer:
    """Sentences stated from records, each list of sentences with the citation of the records it rests on."""

    sentences: list[str]
    citations: list[Citation]

    @property
    def text(self) -> str:
        return " ".join(self.sentences)

    def passages(self) -> list[tuple[str, str]]:
        """The records as the grounding check reads them: (citation id, what it quotes)."""
        return [(c.chunk_id, c.quote) for c in self.citations]


def wants_tickets(message: str) -> bool:
    return bool(_ABOUT_TICKETS.search(message))


def answer_from_records(
    message: str,
    intent: str,
    customer: dict[str, Any] | None,
    orders: list[dict[str, Any]],
    tickets: list[dict[str, Any]] | None = None,
) -> RecordAnswer | None:
    """The answer the records give, or None when the question is not about this customer's records (or
    no customer is known)."""
    if customer is None:
        return None
    reference = str(customer.get("customer_id", ""))
    named = set(_ORDER_ID.findall(message))
    if tickets and _ABOUT_TICKETS.search(message):
        return _records("ticket_history", reference, "Your support tickets", [_ticket(t) for t in tickets])
    if named & {str(o.get("order_id")) for o in orders}:
        chosen = [o for o in orders if o.get("order_id") in named]
        return _records("lookup_orders", reference, "Your orders", [_order(o) for o in chosen])
    about_orders = intent == "order_status" or (
        intent in ORDER_INTENTS and bool(_ABOUT_ORDERS.search(message))
    )
    if about_orders and not _ABOUT_ACCOUNT.search(message):
        if not orders:
            return _records(
                "lookup_orders", reference, "Your orders", ["There are no orders on your account."]
            )
        return _records("lookup_orders", reference, "Your orders", [_order(o) for o in orders])
    if _ABOUT_ACCOUNT.search(message):
        return _records("lookup_customer", reference, "Your account", [_account(customer)])
    return None


def _records(tool: str, customer_id: str, title: str, sentences: list[str]) -> RecordAnswer:
    citation = Citation(
        chunk_id=f"tool:{tool}",
        document_id=f"crm:{customer_id}",
        title=title,
        source=f"crm/{tool}",
        quote=" ".join(sentences),
    )
    return RecordAnswer(sentences, [citation])


def _order(order: dict[str, Any]) -> str:
    items = ", ".join(str(i) for i in order.get("items") or [] if i)
    placed = order.get("placed_at")
    details = "; ".join(part for part in (items, f"placed {placed}" if placed else "") if part)
    about = f" ({details})" if details else ""
    return f"Order {order.get('order_id')}{about} has the status {order.get('status')}."


def _ticket(ticket: dict[str, Any]) -> str:
    subject = f"\u201c{ticket.get('subject')}\u201d"
    return f"Ticket {ticket.get('ticket_id')} about {subject} has the status {ticket.get('status')}."


def _account(customer: dict[str, Any]) -> str:
    plan = customer.get("plan") or "no plan"
    return f"Your account is on {plan}" + (
        f", country {customer['country']}." if customer.get("country") else "."
    )
