"""The support copilot and its review queue over HTTP."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from keel.copilot.types import ReplyRequest, ReplyResponse
from keel.gateway.service import Caller
from keel.review.queue import Decision
from keel.server.deps import ModelCaller, ReviewCaller, RuntimeDep, SupportReader
from keel.store.models import ReviewItem

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
    decided_by: str | None
    note: str | None
    created_at: datetime
    decided_at: datetime | None

    @classmethod
    def of(cls, item: ReviewItem) -> ReviewView:
        return cls(
            id=item.id,
            reply_id=item.reply_id,
            status=item.status,
            reasons=item.reasons,
            draft_reply=item.draft_reply,
            final_reply=item.final_reply,
            claimed_by=item.claimed_by,
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


@router.post("/support/replies", response_model=ReplyResponse)
async def create_reply(body: ReplyRequest, runtime: RuntimeDep, caller: ModelCaller) -> ReplyResponse:
    return await runtime.copilot.reply(body, Caller(tenant=caller.tenant, key_id=caller.key_id))


@router.get("/support/replies/{reply_id}", response_model=ReplyResponse)
def get_reply(reply_id: str, runtime: RuntimeDep, caller: SupportReader) -> ReplyResponse:
    return runtime.copilot.get(caller.tenant, reply_id)


@router.get("/reviews", response_model=ReviewList)
def list_reviews(
    runtime: RuntimeDep,
    caller: ReviewCaller,
    status: Annotated[Literal["pending", "claimed", "approved", "edited", "rejected"] | None, Query()] = None,
    reason: Annotated[str | None, Query(max_length=100)] = None,
    older_than_s: Annotated[int | None, Query(ge=0)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ReviewList:
    items = runtime.reviews.list(caller.tenant, status, reason, older_than_s, limit)
    return ReviewList(data=[ReviewView.of(i) for i in items])


@router.get("/reviews/{review_id}", response_model=ReviewView)
def get_review(review_id: str, runtime: RuntimeDep, caller: ReviewCaller) -> ReviewView:
    return ReviewView.of(runtime.reviews.get(caller.tenant, review_id))


@router.post("/reviews/{review_id}/claim", response_model=ReviewView)
def claim_review(review_id: str, runtime: RuntimeDep, caller: ReviewCaller) -> ReviewView:
    return ReviewView.of(runtime.reviews.claim(caller.tenant, review_id, caller.key_id))


@router.post("/reviews/{review_id}/decision", response_model=ReviewView)
async def decide_review(
    review_id: str, body: Decision, runtime: RuntimeDep, caller: ReviewCaller
) -> ReviewView:
    return ReviewView.of(await runtime.reviews.decide(caller.tenant, review_id, caller.key_id, body))


@router.post("/reviews/{review_id}/dataset", status_code=201)
def add_review_to_dataset(
    review_id: str, body: DatasetRequest, runtime: RuntimeDep, caller: ReviewCaller
) -> dict[str, Any]:
    item = runtime.evals.harvest.from_review(caller.tenant, review_id)
    dataset = runtime.evals.datasets.write(
        caller.tenant,
        body.dataset,
        [item],
        mode="append",
        origin="review",
        note=f"review {review_id}",
        created_by=caller.key_id,
    )
    return {"id": item.key, "object": "eval.item", "dataset": dataset.name, "version": dataset.version}
