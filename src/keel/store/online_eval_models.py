"""ORM models of online evaluation: scores of sampled live replies, and each drift monitor's state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from keel.store.models import Base, new_id, utcnow


class OnlineScore(Base):
    """Reference-free scores of one sampled copilot reply, linked to its trace.

    `query_embedding` (float32, the customer's message as the embedding model saw it) feeds the query
    drift monitor; the text itself stays in the reply's own row only.
    """

    __tablename__ = "online_scores"
    __table_args__ = (Index("ix_online_scores_tenant_created", "tenant", "created_at"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ons"))
    tenant: Mapped[str] = mapped_column(String(64))
    # One score per reply: a job that runs twice finds the first one's row.
    reply_id: Mapped[str] = mapped_column(String(40), unique=True)
    trace_id: Mapped[str] = mapped_column(String(64), index=True)
    status: Mapped[str] = mapped_column(String(32))
    # None where the reply cites nothing (a hand-over, a question back): nothing to be grounded in.
    groundedness: Mapped[float | None] = mapped_column(default=None)
    citation_precision: Mapped[float | None] = mapped_column(default=None)
    # The best cosine similarity of the retrieved passages to the query; None when nothing was found.
    retrieval_top_score: Mapped[float | None] = mapped_column(default=None)
    sentences: Mapped[int] = mapped_column(Integer, default=0)
    citations: Mapped[int] = mapped_column(Integer, default=0)
    # Judge scores when a judge is configured: {"faithfulness": 0.8, ...}.
    judge: Mapped[dict[str, Any]] = mapped_column(default=dict)
    query_embedding: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    embedding_model: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class DriftState(Base):
    """The last check of one drift monitor for one tenant; `since` is when its verdict last changed.

    An alert fires on the change into "drift", decided by a conditional UPDATE, so when several
    consumers check at once exactly one of them sends it.
    """

    __tablename__ = "drift_states"

    tenant: Mapped[str] = mapped_column(String(64), primary_key=True)
    monitor: Mapped[str] = mapped_column(String(64), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(24))
    test: Mapped[str] = mapped_column(String(24))
    statistic: Mapped[float] = mapped_column(default=0.0)
    p_value: Mapped[float] = mapped_column(default=1.0)
    effect: Mapped[float] = mapped_column(default=0.0)
    baseline_n: Mapped[int] = mapped_column(Integer, default=0)
    recent_n: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    checked_at: Mapped[datetime] = mapped_column(default=utcnow)
    since: Mapped[datetime] = mapped_column(default=utcnow)
