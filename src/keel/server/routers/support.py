"""The support copilot and its review queue over HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from keel.copilot.types import ReplyRequest, ReplyResponse
from keel.gateway.service import Caller
from keel.review.claims import as_utc
from keel.review.queue import Decision, Review, ReviewQueue
from keel.server.deps import AdminCaller, ModelCaller, ReviewCaller, SupportReader
from keel.server.services import CopilotDep, EvaluationDep, ReviewsDep

router = APIRouter(prefix="/v1", tags=["support"])


class ReviewView(BaseModel):
    id: str
    object: Literal["review"] = "review"
    reply_id: str
    status: str
    reasons: list[str]
    draft_reply: str
    final_reply: str | None
    claimed_by: str | None
    claimed_at: datetime | None
    # When the claim lapses and another reviewer may take the item over (claiming again renews it).
    claim_expires_at: datetime | None
    decided_by: str | None
    note: str | None
    created_at: datetime
    decided_at: datetime | None

    @classmethod
    def of(cls, item: Review, reviews: ReviewQueue) -> ReviewView:
        claimed = item.status == "claimed"
        return cls(
            id=item.id,
            reply_id=item.reply_id,
            status=item.status,
            reasons=list(item.reasons),
            draft_reply=item.draft_reply,
            final_reply=item.final_reply,
            claimed_by=item.claimed_by,
            claimed_at=as_utc(item.claimed_at) if claimed and item.claimed_at else None,
            claim_expires_at=reviews.rules.expires_at(item.claimed_at) if claimed else None,
            decided_by=item.decided_by,
            note=item.note,
            created_at=item.created_at,
            decided_at=item.decided_at,
        )


class ReviewList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ReviewView]


class DatasetRequest(BaseModel):
    dataset: str = Field(min_length=1, max_length=200)


class AssignRequest(BaseModel):
    reviewer: str = Field(
        min_length=1, max_length=40, description="The reviewer's API key id, or its displayed prefix."
    )


@router.post("/support/replies", response_model=ReplyResponse)
async def create_reply(body: ReplyRequest, copilot: CopilotDep, caller: ModelCaller) -> ReplyResponse:
    return await copilot.reply(body, Caller(tenant=caller.tenant, key_id=caller.key_id))


@router.get("/support/replies/{reply_id}", response_model=ReplyResponse)
def get_reply(reply_id: str, copilot: CopilotDep, caller: SupportReader) -> ReplyResponse:
    return copilot.get(caller.tenant, reply_id)


@router.get("/reviews", response_model=ReviewList)
def list_reviews(
    reviews: ReviewsDep,
    caller: ReviewCaller,
    status: Annotated[Literal["pending", "claimed", "approved", "edited", "rejected"] | None, Query()] = None,
    reason: Annotated[str | None, Query(max_length=100)] = None,
    # At most ten years: a larger age cannot be subtracted from today's date.
    older_than_s: Annotated[int | None, Query(ge=0, le=10 * 365 * 24 * 3600)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ReviewList:
    items = reviews.list(caller.tenant, status, reason, older_than_s, limit)
    return ReviewList(data=[ReviewView.of(i, reviews) for i in items])


@router.get("/reviews/{review_id}", response_model=ReviewView)
def get_review(review_id: str, reviews: ReviewsDep, caller: ReviewCaller) -> ReviewView:
    return ReviewView.of(reviews.get(caller.tenant, review_id), reviews)


@router.post("/reviews/{review_id}/claim", response_model=ReviewView)
def claim_review(review_id: str, reviews: ReviewsDep, caller: ReviewCaller) -> ReviewView:
    return ReviewView.of(reviews.claim(caller.tenant, review_id, caller.key_id), reviews)


@router.post("/reviews/{review_id}/release", response_model=ReviewView)
def release_review(review_id: str, reviews: ReviewsDep, caller: AdminCaller) -> ReviewView:
    item = reviews.release(caller.tenant, review_id, caller.key_id)
    return ReviewView.of(item, reviews)


@router.post("/reviews/{review_id}/assign", response_model=ReviewView)
def assign_review(
    review_id: str, body: AssignRequest, reviews: ReviewsDep, caller: AdminCaller
) -> ReviewView:
    item = reviews.assign(caller.tenant, review_id, body.reviewer, caller.key_id)
    return ReviewView.of(item, reviews)


@router.post("/reviews/{review_id}/decision", response_model=ReviewView)
async def decide_review(
    review_id: str, body: Decision, reviews: ReviewsDep, caller: ReviewCaller
) -> ReviewView:
    item = await reviews.decide(caller.tenant, review_id, caller.key_id, body)
    return ReviewView.of(item, reviews)


@router.post("/reviews/{review_id}/dataset", status_code=201)
def add_review_to_dataset(
    review_id: str, body: DatasetRequest, evals: EvaluationDep, caller: ReviewCaller
) -> dict[str, Any]:
    item = evals.harvest.from_review(caller.tenant, review_id)
    dataset = evals.datasets.write(
        caller.tenant,
        body.dataset,
        [item],
        mode="append",
        origin="review",
        note=f"review {review_id}",
        created_by=caller.key_id,
    )
    return {"id": item.key, "object": "eval.item", "dataset": dataset.name, "version": dataset.version}
