"""Data-subject requests (GDPR): export everything Keel holds about an end user, or erase it everywhere.

An end user is known by the id the application uses for them: the `customer_id` of copilot
conversations and the CRM, and the OpenAI `user` field of model calls (kept on their traces). Erasure
removes conversations and their turns, copilot replies and their reviews, feedback, traces, the CRM
record with its orders and tickets, and the tenant's cached answers; the audit log records that it
happened under a hash of the id, never the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select

from keel.governance.audit import AuditLog
from keel.store.engine import Database
from keel.store.models import (
    Conversation,
    ConversationTurn,
    Customer,
    Feedback,
    Order,
    ReviewItem,
    SpanRecord,
    SupportReply,
    Ticket,
)
from keel.store.online_eval_models import OnlineScore


def subject_hash(tenant: str, end_user_id: str) -> str:
    return hashlib.sha256(f"{tenant}:{end_user_id}".encode()).hexdigest()


def _rows(records: list[Any], fields: list[str]) -> list[dict[str, Any]]:
    return [{f: getattr(r, f) for f in fields} for r in records]


class SubjectRequests:
    """Data-subject export and erasure; each request is audited here, under the subject's hash."""

    def __init__(self, database: Database, audit: AuditLog) -> None:
        self._database = database
        self._audit = audit
        # Called with the tenant after an erasure: cached answers may quote the erased person.
        self.on_erase: list[Callable[[str], None]] = []

    def _trace_ids(
        self, session: Any, tenant: str, end_user_id: str, conversation_ids: list[str]
    ) -> list[str]:
        replies = session.scalars(
            select(SupportReply.trace_id).where(
                SupportReply.tenant == tenant, SupportReply.conversation_id.in_(conversation_ids)
            )
        )
        traced = {t for t in replies}
        # Model calls name their end user in the `user` field, kept as a span attribute.
        # Attributes are JSON, compared here so the query stays portable across databases.
        for trace_id, attributes in session.execute(
            select(SpanRecord.trace_id, SpanRecord.attributes).where(SpanRecord.name.like("chat %"))
        ):
            if attributes.get("keel.user") == end_user_id and attributes.get("keel.tenant") == tenant:
                traced.add(trace_id)
        return sorted(traced)

    def export(self, tenant: str, end_user_id: str, *, actor: str) -> dict[str, Any]:
        exported = self._export(tenant, end_user_id)
        self._audit.append(tenant, actor, "subject.export", subject_hash(tenant, end_user_id))
        return exported

    def _export(self, tenant: str, end_user_id: str) -> dict[str, Any]:
        with self._database.session() as session:
            customer = session.scalar(
                select(Customer).where(Customer.tenant == tenant, Customer.external_id == end_user_id)
            )
            conversations = list(
                session.scalars(
                    select(Conversation).where(
                        Conversation.tenant == tenant, Conversation.customer_id == end_user_id
                    )
                )
            )
            conversation_ids = [c.id for c in conversations]
            turns = list(
                session.scalars(
                    select(ConversationTurn)
                    .where(ConversationTurn.conversation_id.in_(conversation_ids))
                    .order_by(ConversationTurn.created_at)
                )
            )
            # A reply's final answer, once a reviewer decided, lives on its review.
            replies = list(
                session.execute(
                    select(
                        SupportReply.id,
                        SupportReply.question,
                        SupportReply.reply,
                        ReviewItem.final_reply,
                        SupportReply.status,
                        SupportReply.created_at,
                    )
                    .outerjoin(ReviewItem, ReviewItem.id == SupportReply.review_id)
                    .where(SupportReply.tenant == tenant, SupportReply.conversation_id.in_(conversation_ids))
                )
            )
            trace_ids = self._trace_ids(session, tenant, end_user_id, conversation_ids)
            feedback = list(
                session.scalars(
                    select(Feedback).where(Feedback.tenant == tenant, Feedback.trace_id.in_(trace_ids))
                )
            )
            orders = (
                list(session.scalars(select(Order).where(Order.customer_id == customer.id)))
                if customer
                else []
            )
            tickets = (
                list(session.scalars(select(Ticket).where(Ticket.customer_id == customer.id)))
                if customer
                else []
            )
            spans = list(session.scalars(select(SpanRecord).where(SpanRecord.trace_id.in_(trace_ids))))
            return {
                "end_user_id": end_user_id,
                "customer": _rows(
                    [customer], ["external_id", "name", "email", "plan", "country", "created_at"]
                )[0]
                if customer
                else None,
                "orders": _rows(orders, ["external_id", "status", "total", "currency", "items", "placed_at"]),
                "tickets": _rows(tickets, ["external_id", "subject", "status", "messages", "created_at"]),
                "conversations": _rows(conversations, ["id", "channel", "created_at"]),
                "turns": _rows(turns, ["conversation_id", "role", "text", "created_at"]),
                "replies": _rows(replies, ["id", "question", "reply", "final_reply", "status", "created_at"]),
                "feedback": _rows(feedback, ["trace_id", "score", "comment", "correction", "created_at"]),
                "traces": _rows(spans, ["trace_id", "span_id", "name", "start_time", "attributes"]),
            }

    def erase(self, tenant: str, end_user_id: str, *, actor: str) -> dict[str, int]:
        """Deletes everything `export` would return, in one transaction; returns counts per kind."""
        counts = self._erase(tenant, end_user_id)
        for listener in self.on_erase:
            listener(tenant)
        self._audit.append(
            tenant, actor, "subject.erase", subject_hash(tenant, end_user_id), {"deleted": counts}
        )
        return counts

    def _erase(self, tenant: str, end_user_id: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._database.session() as session:
            conversation_ids = list(
                session.scalars(
                    select(Conversation.id).where(
                        Conversation.tenant == tenant, Conversation.customer_id == end_user_id
                    )
                )
            )
            trace_ids = self._trace_ids(session, tenant, end_user_id, conversation_ids)
            reply_ids = list(
                session.scalars(
                    select(SupportReply.id).where(
                        SupportReply.tenant == tenant, SupportReply.conversation_id.in_(conversation_ids)
                    )
                )
            )
            customer = session.scalar(
                select(Customer).where(Customer.tenant == tenant, Customer.external_id == end_user_id)
            )

            def run(kind: str, statement: Any) -> None:
                counts[kind] = session.execute(statement).rowcount  # type: ignore[attr-defined]

            run(
                "feedback",
                delete(Feedback).where(Feedback.tenant == tenant, Feedback.trace_id.in_(trace_ids)),
            )
            run(
                "reviews",
                delete(ReviewItem).where(ReviewItem.tenant == tenant, ReviewItem.reply_id.in_(reply_ids)),
            )
            # Online scores keep a vector of the customer's message: they go with the reply.
            run(
                "online_scores",
                delete(OnlineScore).where(OnlineScore.tenant == tenant, OnlineScore.reply_id.in_(reply_ids)),
            )
            run("replies", delete(SupportReply).where(SupportReply.id.in_(reply_ids)))
            run(
                "turns",
                delete(ConversationTurn).where(ConversationTurn.conversation_id.in_(conversation_ids)),
            )
            run("conversations", delete(Conversation).where(Conversation.id.in_(conversation_ids)))
            run("traces", delete(SpanRecord).where(SpanRecord.trace_id.in_(trace_ids)))
            if customer is not None:
                run("orders", delete(Order).where(Order.customer_id == customer.id))
                run("tickets", delete(Ticket).where(Ticket.customer_id == customer.id))
                run("customer", delete(Customer).where(Customer.id == customer.id))
        return counts
