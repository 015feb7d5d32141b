"""Feedback names a trace of the caller's own tenant; an unknown trace is a 404, not a stored row."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from keel.errors import NotFoundError
from keel.observe.feedback import FeedbackRequest, FeedbackStore
from keel.store.engine import Database
from keel.store.models import Feedback, UsageRecord

TRACE = "ab" * 16


def test_feedback_needs_a_trace_of_the_tenant(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'feedback.db'}")
    database.migrate()
    store = FeedbackStore(database)
    with pytest.raises(NotFoundError) as missing:
        store.record("acme", FeedbackRequest(trace_id=TRACE, score="up"), "user")
    assert missing.value.param == "trace_id" and missing.value.status_code == 404
    with database.session() as session:
        session.add(UsageRecord(tenant="acme", key_id="key_1", alias="keel-local", trace_id=TRACE))
    # Another tenant's trace is as unknown as a missing one.
    with pytest.raises(NotFoundError):
        store.record("globex", FeedbackRequest(trace_id=TRACE, score="up"), "user")
    stored = store.record("acme", FeedbackRequest(trace_id=TRACE, score=5), "user")
    assert stored.score == 1.0
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Feedback)) == 1
