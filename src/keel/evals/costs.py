"""What the model calls of one trace cost, read from the gateway's usage records."""

from __future__ import annotations

from sqlalchemy import func, select

from keel.store.engine import Database
from keel.store.models import UsageRecord


def trace_cost(database: Database, trace_id: str) -> int:
    """Millionths of the currency spent by the calls recorded under `trace_id` (0 when none)."""
    with database.reading() as session:
        total = session.scalar(
            select(func.coalesce(func.sum(UsageRecord.cost_micros), 0)).where(
                UsageRecord.trace_id == trace_id
            )
        )
    return int(total or 0)
