"""Support replies as stored: each reply and its review commit together, and are read back by id or by
the trace that produced them."""

from __future__ import annotations

from sqlalchemy import select

from keel.copilot.memory import ConversationMemory
from keel.copilot.types import Citation, ReplyResponse, ReplyStatus
from keel.errors import NotFoundError
from keel.review.queue import ReviewQueue
from keel.store.engine import Database
from keel.store.models import ReviewItem, SupportReply


class ReplyRecords:
    def __init__(self, database: Database, memory: ConversationMemory, reviews: ReviewQueue) -> None:
        self._database = database
        self._memory = memory
        self._reviews = reviews

    def store(
        self,
        tenant: str,
        conversation_id: str,
        question: str,
        text: str,
        citations: list[Citation],
        score: float,
        status: ReplyStatus,
        intent: str,
        reasons: list[str],
        trace_id: str,
        escalate: bool,
    ) -> ReplyResponse:
        """Stores the reply, and opens its review when `escalate` (the reasons say why)."""
        # The reply and its review commit together: neither is ever stored without the other.
        with self._database.session() as session:
            record = SupportReply(
                tenant=tenant,
                conversation_id=conversation_id,
                question=question,
                status=status,
                reply=text,
                citations=[c.model_dump() for c in citations],
                confidence=score,
                intent=intent,
                trace_id=trace_id,
            )
            session.add(record)
            session.flush()
            reply_id = record.id
            review_id = self._reviews.open_for(session, tenant, reply_id, text, reasons) if escalate else None
            record.review_id = review_id
        self._memory.append(conversation_id, "assistant", text)
        return ReplyResponse(
            id=reply_id,
            reply=text,
            citations=citations,
            confidence=score,
            status=status,
            review_id=review_id,
            trace_id=trace_id,
            conversation_id=conversation_id,
            intent=intent,
            escalation_reasons=reasons,
        )

    def get(self, tenant: str, reply_id: str) -> ReplyResponse:
        with self._database.session() as session:
            record = session.scalar(
                select(SupportReply).where(SupportReply.id == reply_id, SupportReply.tenant == tenant)
            )
            if record is None:
                raise NotFoundError(f"No reply '{reply_id}'.", code="reply_not_found")
            review = session.get(ReviewItem, record.review_id) if record.review_id else None
            return ReplyResponse(
                id=record.id,
                reply=record.reply,
                citations=[Citation(**c) for c in record.citations],
                confidence=record.confidence,
                status="answered" if review and review.final_reply is not None else record.status,
                review_id=record.review_id,
                trace_id=record.trace_id,
                conversation_id=record.conversation_id,
                intent=record.intent,
                escalation_reasons=review.reasons if review else [],
                # The final answer is the review's: a reviewer's approval or edit answers the question.
                final_reply=review.final_reply if review else None,
                question=record.question,
                review_status=review.status if review else None,
            )

    def get_by_trace(self, tenant: str, trace_id: str) -> ReplyResponse:
        """The reply a trace produced (evaluation datasets are built from traces)."""
        with self._database.reading() as session:
            reply_id = session.scalar(
                select(SupportReply.id).where(
                    SupportReply.trace_id == trace_id, SupportReply.tenant == tenant
                )
            )
        if reply_id is None:
            raise NotFoundError(f"No support reply in trace '{trace_id}'.", code="trace_not_found")
        return self.get(tenant, reply_id)
