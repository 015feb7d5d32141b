"""Retention: delete what is older than its kind's retention period (RetentionSettings)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from keel.config import RetentionSettings
from keel.governance.audit import AuditLog
from keel.logs import get_logger
from keel.store.engine import Database
from keel.store.models import (
    Conversation,
    ConversationTurn,
    Feedback,
    Job,
    ReviewItem,
    SpanRecord,
    SupportReply,
    UsageRecord,
)
from keel.store.online_eval_models import OnlineScore

log = get_logger(__name__)


def purge(database: Database, settings: RetentionSettings, now: datetime | None = None) -> dict[str, int]:
    now = now or datetime.now(UTC)

    def cutoff(days: int | None) -> datetime | None:
        return now - timedelta(days=days) if days else None

    counts: dict[str, int] = {}
    with database.session() as session:

        def run(kind: str, statement: Any) -> None:
            counts[kind] = session.execute(statement).rowcount  # type: ignore[attr-defined]

        if (before := cutoff(settings.traces_days)) is not None:
            run("traces", delete(SpanRecord).where(SpanRecord.start_time < before))
        if (before := cutoff(settings.replies_days)) is not None:
            old = select(SupportReply.id).where(SupportReply.created_at < before)
            run("reviews", delete(ReviewItem).where(ReviewItem.reply_id.in_(old)))
            run("online_scores", delete(OnlineScore).where(OnlineScore.reply_id.in_(old)))
            run("replies", delete(SupportReply).where(SupportReply.created_at < before))
        if (before := cutoff(settings.conversations_days)) is not None:
            old = select(Conversation.id).where(Conversation.created_at < before)
            run("turns", delete(ConversationTurn).where(ConversationTurn.conversation_id.in_(old)))
            run("conversations", delete(Conversation).where(Conversation.created_at < before))
        if (before := cutoff(settings.feedback_days)) is not None:
            run("feedback", delete(Feedback).where(Feedback.created_at < before))
        if (before := cutoff(settings.usage_days)) is not None:
            run("usage", delete(UsageRecord).where(UsageRecord.created_at < before))
        if (before := cutoff(settings.jobs_days)) is not None:
            # Job items go with their job (ON DELETE CASCADE); unfinished jobs are kept.
            run("jobs", delete(Job).where(Job.created_at < before, Job.status.not_in(("queued", "running"))))
    return counts


class Retention:
    """Purges on demand (an admin route, the CLI), each purge audited here."""

    def __init__(self, database: Database, settings: RetentionSettings, audit: AuditLog) -> None:
        self._database = database
        self._settings = settings
        self._audit = audit

    def purge(self, *, actor: str, tenant: str = "*") -> dict[str, int]:
        """`tenant`: whose audit log records the purge ("*": Keel-wide); the purge itself is Keel-wide."""
        counts = purge(self._database, self._settings)
        self._audit.append(tenant, actor, "retention.purge", "all", {"deleted": counts})
        return counts


def scheduled_purge(database: Database, settings: RetentionSettings, audit: AuditLog) -> None:
    """The daily purge the job queue runs: deletes, then records what it deleted in the audit log."""
    counts = Retention(database, settings, audit).purge(actor="scheduler")
    log.info("retention_purged", **counts)
