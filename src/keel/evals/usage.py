"""What the model calls of one trace cost and which prompt versions they used, from the gateway's
usage records."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from keel.store.engine import Database
from keel.store.models import UsageRecord


@dataclass(frozen=True)
class TraceUsage:
    # Millionths of the currency.
    cost_micros: int
    prompt_versions: list[str]


def trace_usage(database: Database, trace_id: str) -> TraceUsage:
    with database.reading() as session:
        rows = session.execute(
            select(UsageRecord.cost_micros, UsageRecord.prompt_version).where(
                UsageRecord.trace_id == trace_id
            )
        ).all()
    versions = sorted({version for _, version in rows if version})
    return TraceUsage(sum(cost for cost, _ in rows), versions)
