"""ORM models of evaluation: versioned datasets, their items, runs and per-item results.

A dataset's versions share one table of items: an item belongs to every version from `added_version`
up to (not including) `removed_version`, so a new version costs only the rows that changed and an old
version stays readable exactly as a run saw it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from keel.store.models import Base, new_id, utcnow


class EvalDataset(Base):
    """A named, versioned evaluation dataset of one tenant; `version` is the latest one."""

    __tablename__ = "eval_datasets"
    __table_args__ = (UniqueConstraint("tenant", "name", name="uq_eval_datasets_tenant_name"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("ds"))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EvalDatasetVersion(Base):
    """One version of a dataset: what changed (`note`, `origin`) and how many items it holds."""

    __tablename__ = "eval_dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version", name="uq_eval_dataset_versions"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("dsv"))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("eval_datasets.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    item_count: Mapped[int] = mapped_column(Integer, default=0)
    origin: Mapped[str] = mapped_column(String(64), default="")
    note: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvalItem(Base):
    """One example: the input (a message or a conversation) and what a good answer looks like.

    `key` names the example across versions (an edit keeps it), so runs over different versions pair up.
    """

    __tablename__ = "eval_items"
    __table_args__ = (
        Index("ix_eval_items_dataset_versions", "dataset_id", "added_version", "removed_version"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("evi"))
    dataset_id: Mapped[str] = mapped_column(ForeignKey("eval_datasets.id", ondelete="CASCADE"))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    key: Mapped[str] = mapped_column(String(64))
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    added_version: Mapped[int] = mapped_column(Integer)
    removed_version: Mapped[int | None] = mapped_column(Integer, default=None)
    # {"message": str} or {"messages": [{"role", "content"}, ...]}
    input: Mapped[dict[str, Any]] = mapped_column(default=dict)
    reference_answer: Mapped[str | None] = mapped_column(Text, default=None)
    expected_sources: Mapped[list[Any]] = mapped_column(default=list)
    # answerable | partial | unanswerable | underspecified; None when not known
    answerability: Mapped[str | None] = mapped_column(String(16), default=None)
    tags: Mapped[list[Any]] = mapped_column(default=list)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    origin: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EvalRun(Base):
    """A run of one target over one dataset version under a recorded configuration."""

    __tablename__ = "eval_runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("run"))
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    dataset_id: Mapped[str] = mapped_column(ForeignKey("eval_datasets.id", ondelete="CASCADE"), index=True)
    dataset_version: Mapped[int] = mapped_column(Integer)
    target: Mapped[str] = mapped_column(String(16))
    trials: Mapped[int] = mapped_column(Integer, default=1)
    concurrency: Mapped[int] = mapped_column(Integer, default=1)
    # The settings in force (prompt version, model alias, retrieval, copilot thresholds, judge).
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The operator's overrides as given (the parsed TOML), so the run can be repeated.
    overrides: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # queued → running → succeeded | partial (some items failed) | failed
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    # Aggregates with confidence intervals, written when the run finishes.
    summary: Mapped[dict[str, Any]] = mapped_column(default=dict)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    judge_cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_by: Mapped[str | None] = mapped_column(String(40), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    heartbeat_at: Mapped[datetime | None] = mapped_column(default=None)


class EvalResult(Base):
    """One trial of one item in one run: the output, its scores and its trace."""

    __tablename__ = "eval_results"
    __table_args__ = (UniqueConstraint("run_id", "item_id", "trial", name="uq_eval_results_run_item_trial"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True, default=lambda: new_id("evr"))
    run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id", ondelete="CASCADE"), index=True)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    item_id: Mapped[str] = mapped_column(String(40))
    item_key: Mapped[str] = mapped_column(String(64))
    ordinal: Mapped[int] = mapped_column(Integer, default=0)
    trial: Mapped[int] = mapped_column(Integer, default=0)
    # pending → processing (claimed) → done | failed; a stale claim goes back to pending
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    claimed_at: Mapped[datetime | None] = mapped_column(default=None)
    # What the target returned: reply, status, citations, retrieved sources (already redacted).
    output: Mapped[dict[str, Any]] = mapped_column(default=dict)
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    trace_id: Mapped[str | None] = mapped_column(String(32), default=None)
    latency_ms: Mapped[float | None] = mapped_column(default=None)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    judge_cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
