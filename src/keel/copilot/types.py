"""The copilot's request and response at the API boundary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

ReplyStatus = Literal["answered", "escalated", "needs_clarification"]


class ReplyRequest(BaseModel):
    conversation_id: str | None = Field(None, max_length=40)
    customer_id: str | None = Field(None, max_length=64)
    message: str = Field(min_length=1, max_length=4000)
    channel: str | None = Field(None, max_length=32)


class Citation(BaseModel):
    chunk_id: str
    document_id: str
    title: str
    source: str
    quote: str


class ReplyResponse(BaseModel):
    id: str
    object: Literal["support.reply"] = "support.reply"
    reply: str
    citations: list[Citation]
    confidence: float
    status: ReplyStatus
    review_id: str | None = None
    trace_id: str
    conversation_id: str
    intent: str
    escalation_reasons: list[str] = Field(default_factory=list)
    # The customer's message this answers.
    question: str | None = None
    # Set once a reviewer decided; what the customer should finally see.
    final_reply: str | None = None
    review_status: str | None = None


@dataclass(frozen=True)
class StoredReply:
    """What the copilot hands on once a reply is stored: online evaluation samples and scores these."""

    tenant: str
    reply: ReplyResponse
    # The best cosine similarity of the passages the reply was written from; None when none was found.
    retrieval_top_score: float | None
