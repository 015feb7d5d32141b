"""The review queue: list, claim and decide escalated replies; each decision becomes feedback, reaches
the client (poll or signed webhook), and an edited answer can become an evaluation example."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select, update

from keel.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from keel.governance.audit import AuditLog
from keel.review.webhooks import WebhookSender
from keel.store.engine import Database
from keel.store.models import Feedback, ReviewItem, SupportReply

# Reviewer judgement as feedback: approved answers were right, edited ones partly, rejected ones not.
DECISION_SCORES = {"approve": 1.0, "edit": 0.5, "reject": 0.0}
DECIDED = {"approve": "approved", "edit": "edited", "reject": "rejected"}


class Decision(BaseModel):
    action: Literal["approve", "edit", "reject"]
    final_reply: str | None = Field(None, min_length=1, max_length=8000)
    note: str | None = Field(None, max_length=4000)

    @model_validator(mode="after")
    def _edit_needs_text(self) -> Decision:
        if self.action == "edit" and not self.final_reply:
            raise ValueError("an edit needs 'final_reply'")
        return self


class ReviewQueue:
    def __init__(self, database: Database, webhooks: WebhookSender, audit: AuditLog | None = None) -> None:
        self._database = database
        self._webhooks = webhooks
        self._audit = audit

    def enqueue(self, tenant: str, reply_id: str, draft: str, reasons: list[str]) -> str:
        with self._database.session() as session:
            item = ReviewItem(tenant=tenant, reply_id=reply_id, draft_reply=draft, reasons=reasons)
            session.add(item)
            session.flush()
            return item.id

    def list(
        self,
        tenant: str,
        status: str | None = None,
        reason: str | None = None,
        older_than_s: int | None = None,
        limit: int = 50,
    ) -> list[ReviewItem]:
        query = select(ReviewItem).where(ReviewItem.tenant == tenant).order_by(ReviewItem.created_at)
        if status:
            query = query.where(ReviewItem.status == status)
        if older_than_s is not None:
            query = query.where(ReviewItem.created_at <= datetime.now(UTC) - timedelta(seconds=older_than_s))
        with self._database.session() as session:
            items = list(session.scalars(query.limit(limit if reason is None else 1000)))
        if reason:
            # Reasons are a JSON list; matched here so the query stays portable.
            items = [i for i in items if any(r == reason or r.startswith(f"{reason}:") for r in i.reasons)]
        return items[:limit]

    def get(self, tenant: str, review_id: str) -> ReviewItem:
        with self._database.session() as session:
            item = session.scalar(
                select(ReviewItem).where(ReviewItem.id == review_id, ReviewItem.tenant == tenant)
            )
            if item is None:
                raise NotFoundError(f"No review item '{review_id}'.", code="review_not_found")
            return item

    def claim(self, tenant: str, review_id: str, reviewer: str) -> ReviewItem:
        """Atomic: of two reviewers claiming at once, exactly one gets the item."""
        self.get(tenant, review_id)
        with self._database.session() as session:
            claimed = session.execute(
                update(ReviewItem)
                .where(
                    ReviewItem.id == review_id,
                    ReviewItem.tenant == tenant,
                    (ReviewItem.status == "pending")
                    | ((ReviewItem.status == "claimed") & (ReviewItem.claimed_by == reviewer)),
                )
                .values(status="claimed", claimed_by=reviewer, claimed_at=datetime.now(UTC))
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                raise InvalidRequestError(
                    "This item is already claimed or decided.", code="review_not_claimable"
                )
        return self.get(tenant, review_id)

    async def decide(self, tenant: str, review_id: str, reviewer: str, decision: Decision) -> ReviewItem:
        item = self.get(tenant, review_id)
        if item.status != "claimed" or item.claimed_by != reviewer:
            raise PermissionDeniedError("Claim the item before deciding it.", code="review_not_claimed")
        with self._database.session() as session:
            reply = session.get_one(SupportReply, item.reply_id)
            final = {"approve": item.draft_reply, "edit": decision.final_reply, "reject": None}[
                decision.action
            ]
            session.execute(
                update(ReviewItem)
                .where(ReviewItem.id == review_id)
                .values(
                    status=DECIDED[decision.action],
                    final_reply=final,
                    decided_by=reviewer,
                    decided_at=datetime.now(UTC),
                    note=decision.note,
                )
            )
            reply.final_reply = final
            reply.status = "answered" if final is not None else "escalated"
            session.add(
                Feedback(
                    tenant=tenant,
                    trace_id=reply.trace_id,
                    reply_id=reply.id,
                    source="reviewer",
                    score=DECISION_SCORES[decision.action],
                    comment=decision.note,
                    correction=decision.final_reply if decision.action == "edit" else None,
                )
            )
            payload = {
                "reply_id": reply.id,
                "conversation_id": reply.conversation_id,
                "review_id": review_id,
                "decision": DECIDED[decision.action],
                "final_reply": final,
            }
        if self._audit is not None:
            self._audit.append(tenant, reviewer, f"review.{decision.action}", review_id)
        await self._webhooks.send("support.reply.decided", payload)
        return self.get(tenant, review_id)
