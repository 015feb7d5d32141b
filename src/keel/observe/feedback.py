"""Feedback on answers from end users or reviewers: thumbs or 1-5 stars, normalised to 0-1, linked to
the trace, the reply and the prompt version it was given under."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from keel.errors import NotFoundError
from keel.store.engine import Database
from keel.store.models import Feedback, SpanRecord, SupportReply, UsageRecord
from keel.store.records import copied

_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


class FeedbackRequest(BaseModel):
    trace_id: str = Field(pattern=_TRACE_ID.pattern)
    # "up" / "down", or 1-5 stars.
    score: Literal["up", "down"] | int = Field(...)
    comment: str | None = Field(None, max_length=4000)
    correction: str | None = Field(None, max_length=8000)

    def normalised(self) -> float:
        if self.score == "up":
            return 1.0
        if self.score == "down":
            return 0.0
        if not 1 <= int(self.score) <= 5:
            raise ValueError("stars go from 1 to 5")
        return (int(self.score) - 1) / 4


@dataclass(frozen=True)
class FeedbackRecord:
    """Stored feedback as the store reports it: a copy of its row."""

    id: str
    tenant: str
    trace_id: str
    reply_id: str | None
    source: str
    score: float
    comment: str | None
    correction: str | None
    prompt_version: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: Feedback) -> FeedbackRecord:
        return copied(cls, row)


class FeedbackStore:
    def __init__(self, database: Database, settle: Callable[[], object] | None = None) -> None:
        self._database = database
        # Stores this process's pending usage records: feedback right after an answer finds its call.
        self._settle = settle

    def record(self, tenant: str, request: FeedbackRequest, source: str) -> FeedbackRecord:
        if self._settle is not None:
            self._settle()
        with self._database.session() as session:
            reply = session.scalar(
                select(SupportReply).where(
                    SupportReply.trace_id == request.trace_id, SupportReply.tenant == tenant
                )
            )
            # The prompt version the answer was generated under, from the model call of the same trace.
            prompt_version = session.scalar(
                select(UsageRecord.prompt_version)
                .where(UsageRecord.trace_id == request.trace_id, UsageRecord.tenant == tenant)
                .limit(1)
            )
            # Feedback is on an answer Keel gave this tenant: its trace left a reply, a model call or a span.
            if (
                reply is None
                and prompt_version is None
                and not self._traced(session, tenant, request.trace_id)
            ):
                raise NotFoundError(
                    f"No trace '{request.trace_id}' exists for this tenant.",
                    code="trace_not_found",
                    param="trace_id",
                )
            feedback = Feedback(
                tenant=tenant,
                trace_id=request.trace_id,
                reply_id=reply.id if reply else None,
                source=source,
                score=request.normalised(),
                comment=request.comment,
                correction=request.correction,
                prompt_version=prompt_version,
            )
            session.add(feedback)
            session.flush()
            return FeedbackRecord.of(feedback)

    @staticmethod
    def _traced(session: Session, tenant: str, trace_id: str) -> bool:
        for column, owner in (
            (UsageRecord.trace_id, UsageRecord.tenant),
            (SpanRecord.trace_id, SpanRecord.tenant),
        ):
            if session.scalar(select(column).where(column == trace_id, owner == tenant).limit(1)) is not None:
                return True
        return False
