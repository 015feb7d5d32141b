"""An escalated reply and its review are one unit of work, and the review owns the final answer: a
reviewer's decision leaves the copilot's own reply row as the copilot produced it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from keel.governance.audit import AuditLog
from keel.keys import KeyStore, Role
from keel.review.queue import Decision, ReviewQueue
from keel.review.webhooks import WebhookSender
from keel.store.models import ReviewItem, SupportReply
from tests.unit.copilot.test_pipeline import answer, ask, make_copilot
from tests.unit.gateway.doubles import ScriptedModel

HAND_OVER = "Can I talk to a person about charging?"


def test_a_failure_opening_the_review_leaves_no_reply_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copilot, database = make_copilot(tmp_path, ScriptedModel([answer("x")]), "human_handoff")

    def broken(session: Session, *args: Any) -> str:
        session.flush()
        raise RuntimeError("review store unavailable")

    monkeypatch.setattr(ReviewQueue, "open_for", staticmethod(broken))
    with pytest.raises(RuntimeError):
        ask(copilot, HAND_OVER)
    with database.reading() as session:
        assert session.scalar(select(func.count()).select_from(SupportReply)) == 0
        assert session.scalar(select(func.count()).select_from(ReviewItem)) == 0


def test_the_reviewers_answer_is_the_reviews_and_the_reply_row_keeps_the_copilots(tmp_path: Path) -> None:
    copilot, database = make_copilot(tmp_path, ScriptedModel([answer("x")]), "human_handoff")
    escalated = ask(copilot, HAND_OVER)
    assert escalated.status == "escalated" and escalated.review_id is not None
    with database.reading() as session:
        review = session.get_one(ReviewItem, escalated.review_id)
        assert (review.reply_id, review.draft_reply) == (escalated.id, escalated.reply)

    reviewer = KeyStore(database, AuditLog(database)).create("acme", Role.REVIEWER, "alice").record.id
    queue = ReviewQueue(database, WebhookSender(None, None))
    queue.claim("acme", escalated.review_id, reviewer)
    decision = Decision(action="edit", final_reply="A person will call you today.")
    asyncio.run(queue.decide("acme", escalated.review_id, reviewer, decision))

    shown = copilot.get("acme", escalated.id)
    assert (shown.final_reply, shown.status, shown.review_status) == (
        "A person will call you today.",
        "answered",
        "edited",
    )
    assert shown.reply == escalated.reply
    with database.reading() as session:
        row = session.get_one(SupportReply, escalated.id)
        assert (row.reply, row.status) == (escalated.reply, "escalated")
        assert session.get_one(ReviewItem, escalated.review_id).final_reply == "A person will call you today."
