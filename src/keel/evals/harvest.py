"""Dataset items from live traffic: reviewers' final answers and the replies of given traces.

A review's key is its id and a trace's key its trace id, so adding the same one twice replaces the item.
"""

from __future__ import annotations

from collections.abc import Iterable

from keel.copilot.pipeline import Copilot
from keel.copilot.types import ReplyResponse
from keel.errors import InvalidRequestError
from keel.evals.items import DatasetItem
from keel.review.queue import ReviewQueue

REVIEWED = ("approved", "edited")
MAX_HARVEST = 5_000


def _sources(reply: ReplyResponse) -> list[str]:
    # Several citations often quote one document; the expected sources are documents.
    return list(dict.fromkeys(c.source for c in reply.citations))


class Harvest:
    def __init__(self, reviews: ReviewQueue, copilot: Copilot) -> None:
        self._reviews = reviews
        self._copilot = copilot

    def from_review(self, tenant: str, review_id: str) -> DatasetItem:
        review = self._reviews.get(tenant, review_id)
        if review.status not in REVIEWED or review.final_reply is None:
            raise InvalidRequestError(
                "Only an approved or edited answer can become an example.", code="review_not_decided"
            )
        reply = self._copilot.get(tenant, review.reply_id)
        return DatasetItem(
            key=review.id,
            input=reply.question or review.draft_reply,
            reference_answer=review.final_reply,
            expected_sources=_sources(reply),
            answerability="answerable",
            tags=["review", review.status],
            metadata={"review_id": review.id, "trace_id": reply.trace_id, "intent": reply.intent},
        )

    def from_reviews(self, tenant: str, limit: int = 500) -> list[DatasetItem]:
        """Every approved or edited review (oldest first), up to `limit` of each."""
        limit = min(limit, MAX_HARVEST)
        decided = [r for status in REVIEWED for r in self._reviews.list(tenant, status=status, limit=limit)]
        decided.sort(key=lambda r: r.created_at)
        return [self.from_review(tenant, r.id) for r in decided]

    def from_traces(self, tenant: str, trace_ids: Iterable[str]) -> list[DatasetItem]:
        """A trace's question with the answer a reviewer gave, else the copilot's own (a regression
        snapshot: a later run that differs from it shows up in the comparison)."""
        wanted = list(dict.fromkeys(trace_ids))
        if len(wanted) > MAX_HARVEST:
            raise InvalidRequestError(f"At most {MAX_HARVEST} traces per call.")
        items = []
        for trace_id in wanted:
            reply = self._copilot.get_by_trace(tenant, trace_id)
            reviewed = reply.final_reply is not None
            items.append(
                DatasetItem(
                    key=trace_id[:64],
                    input=reply.question or "",
                    reference_answer=reply.final_reply if reviewed else reply.reply,
                    expected_sources=_sources(reply),
                    tags=["trace", "reviewed" if reviewed else "as_answered"],
                    metadata={"trace_id": trace_id, "status": reply.status, "intent": reply.intent},
                )
            )
        return items
