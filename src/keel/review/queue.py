"""The review queue: list, claim and decide escalated replies; each decision becomes feedback, reaches
the client (poll or signed webhook), and an edited answer can become an evaluation example. Claims lapse
(claims.py); an administrator can release or reassign one, and every change of hands is audited."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from keel.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from keel.governance.audit import AuditLog
from keel.keys import Role
from keel.review.claims import ClaimRules, ClaimState
from keel.review.webhooks import WebhookSender
from keel.store.engine import Database
from keel.store.models import ApiKey, Feedback, ReviewItem, SupportReply, utcnow
from keel.store.records import copied

# Reviewer judgement as feedback: approved answers were right, edited ones partly, rejected ones not.
DECISION_SCORES = {"approve": 1.0, "edit": 0.5, "reject": 0.0}
DECIDED = {"approve": "approved", "edit": "edited", "reject": "rejected"}
# Roles whose keys may hold a claim: the ones the review routes allow.
CLAIMING_ROLES = frozenset({Role.REVIEWER.value, Role.ADMIN.value})
# Skips the ORM's attempt to mirror a conditional UPDATE in loaded objects: results are read afresh.
_UNSYNCED = {"synchronize_session": False}


class Decision(BaseModel):
    action: Literal["approve", "edit", "reject"]
    final_reply: str | None = Field(None, min_length=1, max_length=8000)
    note: str | None = Field(None, max_length=4000)

    @model_validator(mode="after")
    def _edit_needs_text(self) -> Decision:
        if self.action == "edit" and not self.final_reply:
            raise ValueError("an edit needs 'final_reply'")
        return self


@dataclass(frozen=True)
class Review:
    """A review item as this service hands it out: a copy, read inside the service's own transaction, so
    no caller holds (or can write through) the queue's rows."""

    id: str
    tenant: str
    reply_id: str
    status: str
    reasons: tuple[str, ...]
    draft_reply: str
    final_reply: str | None
    claimed_by: str | None
    claimed_at: datetime | None
    decided_by: str | None
    decided_at: datetime | None
    note: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: ReviewItem) -> Review:
        return copied(cls, row, reasons=tuple(row.reasons))


@dataclass(frozen=True)
class Claim:
    """Who holds an item and until when, as the claim rules see it now."""

    holder: str | None
    state: ClaimState
    expires_at: datetime | None


class ReviewQueue:
    def __init__(
        self,
        database: Database,
        webhooks: WebhookSender,
        audit: AuditLog | None = None,
        *,
        claim_ttl_s: float = 1800,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._database = database
        self._webhooks = webhooks
        self._audit = audit
        self.rules = ClaimRules(timedelta(seconds=claim_ttl_s))
        self._clock = clock

    @staticmethod
    def open_for(session: Session, tenant: str, reply_id: str, draft: str, reasons: list[str]) -> str:
        """Opens a review of a reply inside the caller's unit of work, so the reply and its review are
        committed together or not at all."""
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
    ) -> list[Review]:
        query = select(ReviewItem).where(ReviewItem.tenant == tenant).order_by(ReviewItem.created_at)
        if status:
            query = query.where(ReviewItem.status == status)
        if older_than_s is not None:
            query = query.where(ReviewItem.created_at <= self._clock() - timedelta(seconds=older_than_s))
        with self._database.session() as session:
            items = [
                Review.of(row) for row in session.scalars(query.limit(limit if reason is None else 1000))
            ]
        if reason:
            # Reasons are a JSON list; matched here so the query stays portable.
            items = [i for i in items if any(r == reason or r.startswith(f"{reason}:") for r in i.reasons)]
        return items[:limit]

    def get(self, tenant: str, review_id: str) -> Review:
        with self._database.session() as session:
            return Review.of(self._find(session, tenant, review_id))

    def claim_of(self, item: Review) -> Claim:
        with self._database.reading() as session:
            return self._claim_of(session, item, self._clock())

    def _claim_of(self, session: Session, item: Review | ReviewItem, now: datetime) -> Claim:
        if item.status != "claimed":
            return Claim(None, "none", None)
        active = item.claimed_by is not None and (
            session.scalar(select(ApiKey.id).where(ApiKey.id == item.claimed_by, ApiKey.revoked_at.is_(None)))
            is not None
        )
        state = self.rules.state(item.status, item.claimed_at, active, now)
        return Claim(item.claimed_by, state, self.rules.expires_at(item.claimed_at))

    def _find(self, session: Session, tenant: str, review_id: str, *, lock: bool = False) -> ReviewItem:
        query = select(ReviewItem).where(ReviewItem.id == review_id, ReviewItem.tenant == tenant)
        # The row lock (PostgreSQL) holds off other writers until this unit of work ends; SQLite's
        # writers already take turns (BEGIN IMMEDIATE), and it ignores FOR UPDATE.
        item = session.scalar(query.with_for_update() if lock else query)
        if item is None:
            raise NotFoundError(f"No review item '{review_id}'.", code="review_not_found")
        return item

    def claim(self, tenant: str, review_id: str, reviewer: str) -> Review:
        """Atomic: of reviewers claiming at once, exactly one gets the item. A pending item, one's own
        claim (renewed) and a lapsed claim (expired, or its holder's key revoked) can be claimed."""
        now = self._clock()
        with self._database.session() as session:
            item = self._find(session, tenant, review_id)
            before = self._claim_of(session, item, now)
            # The holder seen here is part of the condition, so the audit names whom the claim was taken from.
            same_holder = (
                ReviewItem.claimed_by.is_(None)
                if item.claimed_by is None
                else ReviewItem.claimed_by == item.claimed_by
            )
            claimed = session.execute(
                update(ReviewItem)
                .where(
                    ReviewItem.id == review_id,
                    ReviewItem.tenant == tenant,
                    self.rules.claimable_by(reviewer, now),
                    same_holder,
                )
                .values(status="claimed", claimed_by=reviewer, claimed_at=now),
                execution_options=_UNSYNCED,
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                raise InvalidRequestError(
                    "This item is already claimed or decided.", code="review_not_claimable"
                )
        if before.holder is not None and before.holder != reviewer:
            self._record(
                tenant, reviewer, "review.takeover", review_id, {"from": before.holder, "claim": before.state}
            )
        return self.get(tenant, review_id)

    def release(self, tenant: str, review_id: str, admin: str) -> Review:
        """An administrator hands a claimed item back to the queue, whoever holds it."""
        with self._database.session() as session:
            item = self._find(session, tenant, review_id, lock=True)
            if item.status != "claimed":
                raise InvalidRequestError(
                    f"Only a claimed item can be released; this one is {item.status}.", code="review_not_held"
                )
            before = self._claim_of(session, item, self._clock())
            item.status, item.claimed_by, item.claimed_at = "pending", None, None
        self._record(
            tenant, admin, "review.release", review_id, {"from": before.holder, "claim": before.state}
        )
        return self.get(tenant, review_id)

    def assign(self, tenant: str, review_id: str, reviewer: str, admin: str) -> Review:
        """An administrator gives a pending or claimed item to a reviewer (a key id or its displayed prefix):
        an active key of this tenant with the reviewer or admin role. The claim starts afresh."""
        now = self._clock()
        with self._database.session() as session:
            target = self._claiming_key(session, tenant, reviewer)
            item = self._find(session, tenant, review_id, lock=True)
            if item.status not in ("pending", "claimed"):
                raise InvalidRequestError(
                    f"A decided item cannot be assigned; this one is {item.status}.", code="review_decided"
                )
            before = self._claim_of(session, item, now)
            item.status, item.claimed_by, item.claimed_at = "claimed", target, now
        self._record(
            tenant,
            admin,
            "review.assign",
            review_id,
            {"to": target, "from": before.holder, "claim": before.state},
        )
        return self.get(tenant, review_id)

    @staticmethod
    def _claiming_key(session: Session, tenant: str, reviewer: str) -> str:
        matches = list(
            session.scalars(
                select(ApiKey).where(
                    ApiKey.tenant == tenant,
                    ApiKey.revoked_at.is_(None),
                    (ApiKey.id == reviewer) | (ApiKey.prefix == reviewer),
                )
            )
        )
        if not matches:
            raise InvalidRequestError(
                f"No active API key '{reviewer}' in this tenant.", code="reviewer_not_found", param="reviewer"
            )
        if len(matches) > 1:
            raise InvalidRequestError(
                "That prefix matches several keys; name the reviewer by key id.",
                code="reviewer_ambiguous",
                param="reviewer",
            )
        if matches[0].role not in CLAIMING_ROLES:
            raise InvalidRequestError(
                f"That key's role is '{matches[0].role}'; only a reviewer or admin key can hold a review.",
                code="reviewer_not_allowed",
                param="reviewer",
            )
        return matches[0].id

    def _record(self, tenant: str, actor: str, action: str, review_id: str, details: dict[str, Any]) -> None:
        if self._audit is not None:
            self._audit.append(tenant, actor, action, review_id, details)

    async def decide(self, tenant: str, review_id: str, reviewer: str, decision: Decision) -> Review:
        """Only the claim's holder decides, and only while it still holds the claim: a lapsed claim that
        another reviewer took over fails here, atomically, even if the takeover came mid-request. The
        database work runs on a worker thread; the client hears of the decision by webhook."""
        payload = await asyncio.to_thread(self._record_decision, tenant, review_id, reviewer, decision)
        await self._webhooks.send("support.reply.decided", payload)
        return await asyncio.to_thread(self.get, tenant, review_id)

    def _record_decision(
        self, tenant: str, review_id: str, reviewer: str, decision: Decision
    ) -> dict[str, Any]:
        """Writes the decision and the final answer on the review's own row, and the reviewer's feedback;
        returns the webhook's payload. The copilot's reply row keeps what the copilot produced."""
        item = self.get(tenant, review_id)
        if item.status != "claimed" or item.claimed_by != reviewer:
            raise PermissionDeniedError("Claim the item before deciding it.", code="review_not_claimed")
        with self._database.session() as session:
            final = {"approve": item.draft_reply, "edit": decision.final_reply, "reject": None}[
                decision.action
            ]
            decided = session.execute(
                update(ReviewItem)
                .where(
                    ReviewItem.id == review_id,
                    ReviewItem.status == "claimed",
                    ReviewItem.claimed_by == reviewer,
                )
                .values(
                    status=DECIDED[decision.action],
                    final_reply=final,
                    decided_by=reviewer,
                    decided_at=self._clock(),
                    note=decision.note,
                ),
                execution_options=_UNSYNCED,
            )
            if decided.rowcount != 1:  # type: ignore[attr-defined]
                raise PermissionDeniedError(
                    "Another reviewer took this item over; it is no longer yours to decide.",
                    code="review_not_claimed",
                )
            reply = session.get_one(SupportReply, item.reply_id)
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
        return payload
