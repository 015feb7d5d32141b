"""Periodic jobs on the queue: requeueing jobs whose consumer died (every minute) and the daily
retention purge. Every consumer runs them; each is safe to run in several places at once."""

from __future__ import annotations

from huey import Huey, crontab

from keel.config import RetentionSettings
from keel.governance.audit import AuditLog
from keel.governance.retention import purge
from keel.jobs.ingestion_jobs import IngestionJobs
from keel.logs import get_logger
from keel.store.engine import Database

log = get_logger(__name__)


def register_maintenance(
    queue: Huey,
    database: Database,
    retention: RetentionSettings,
    audit: AuditLog,
    jobs: IngestionJobs,
) -> None:
    @queue.periodic_task(crontab(minute="*"), name="keel.requeue_stale_jobs")  # type: ignore[untyped-decorator]
    def requeue_stale_jobs() -> None:
        jobs.requeue_stale()

    @queue.periodic_task(crontab(hour="3", minute="17"), name="keel.retention_purge")  # type: ignore[untyped-decorator]
    def retention_purge() -> None:
        counts = purge(database, retention)
        audit.append("*", "scheduler", "retention.purge", "all", {"deleted": counts})
        log.info("retention_purged", **counts)
