"""Periodic jobs on the queue: the daily retention purge (the consumer that runs periodic tasks does it)."""

from __future__ import annotations

from huey import Huey, crontab

from keel.config import RetentionSettings
from keel.governance.audit import AuditLog
from keel.governance.retention import purge
from keel.logs import get_logger
from keel.store.engine import Database

log = get_logger(__name__)


def register_maintenance(
    queue: Huey, database: Database, retention: RetentionSettings, audit: AuditLog
) -> None:
    @queue.periodic_task(crontab(hour="3", minute="17"), name="keel.retention_purge")  # type: ignore[untyped-decorator]
    def retention_purge() -> None:
        counts = purge(database, retention)
        audit.append("*", "scheduler", "retention.purge", "all", {"deleted": counts})
        log.info("retention_purged", **counts)
