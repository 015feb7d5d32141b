"""Cost and usage reports from the usage ledger: totals grouped by day, key, model, prompt or feature."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import func, select

from keel.store.engine import Database
from keel.store.models import UsageRecord

Dimension = Literal[
    "day", "key", "model", "deployment", "prompt", "feature", "prompt_label", "experiment", "arm"
]
_COLUMNS: dict[str, Any] = {
    # date() is a function in SQLite and PostgreSQL alike; CAST(... AS DATE) is not portable to SQLite.
    "day": func.date(UsageRecord.created_at),
    "key": UsageRecord.key_id,
    "model": UsageRecord.alias,
    "deployment": UsageRecord.deployment,
    "prompt": UsageRecord.prompt_version,
    "feature": UsageRecord.feature,
    # A registry prompt's label, and the experiment (or canary) and arm that served the call.
    "prompt_label": UsageRecord.prompt_label,
    "experiment": UsageRecord.experiment,
    "arm": UsageRecord.experiment_arm,
}


class UsageRow(BaseModel):
    group: dict[str, str | None]
    requests: int
    errors: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    cost: Decimal
    avg_latency_ms: float


class UsageReport(BaseModel):
    object: Literal["usage.report"] = "usage.report"
    tenant: str
    group_by: list[str]
    rows: list[UsageRow]


def usage_report(
    database: Database,
    tenant: str,
    group_by: list[Dimension],
    since: datetime | None = None,
    until: datetime | None = None,
) -> UsageReport:
    keys = [_COLUMNS[d].label(d) for d in group_by]
    query = (
        select(
            *keys,
            func.count().label("requests"),
            func.sum(func.cast(UsageRecord.outcome != "ok", type_=UsageRecord.retries.type)).label("errors"),
            func.sum(func.cast(UsageRecord.cache != "miss", type_=UsageRecord.retries.type)).label(
                "cache_hits"
            ),
            func.coalesce(func.sum(UsageRecord.prompt_tokens), 0).label("prompt_tokens"),
            func.coalesce(func.sum(UsageRecord.completion_tokens), 0).label("completion_tokens"),
            func.coalesce(func.sum(UsageRecord.cost_micros), 0).label("cost_micros"),
            func.avg(UsageRecord.latency_ms).label("avg_latency_ms"),
        )
        .where(UsageRecord.tenant == tenant)
        .group_by(*keys)
        .order_by(*keys)
    )
    if since is not None:
        query = query.where(UsageRecord.created_at >= since)
    if until is not None:
        query = query.where(UsageRecord.created_at < until)
    with database.session() as session:
        rows = session.execute(query).all()
    return UsageReport(
        tenant=tenant,
        group_by=list(group_by),
        rows=[
            UsageRow(
                group={d: _text(getattr(row, d)) for d in group_by},
                requests=row.requests,
                errors=int(row.errors or 0),
                cache_hits=int(row.cache_hits or 0),
                prompt_tokens=int(row.prompt_tokens),
                completion_tokens=int(row.completion_tokens),
                cost=Decimal(int(row.cost_micros)) / Decimal(1_000_000),
                avg_latency_ms=round(float(row.avg_latency_ms or 0), 1),
            )
            for row in rows
        ],
    )


class UsageReports:
    """The usage report as a service of the runtime, for the routes that serve it. `settle` stores the
    usage records this process still holds (the gateway's ledger writes them a moment after each call),
    so a report read right after a call counts it."""

    def __init__(self, database: Database, settle: Callable[[], object] | None = None) -> None:
        self._database = database
        self._settle = settle

    def report(
        self,
        tenant: str,
        group_by: list[Dimension],
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> UsageReport:
        if self._settle is not None:
            self._settle()
        return usage_report(self._database, tenant, group_by, since, until)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, date) else str(value)


def to_csv(report: UsageReport) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    fields = [
        "requests",
        "errors",
        "cache_hits",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "avg_latency_ms",
    ]
    writer.writerow([*report.group_by, *fields])
    for row in report.rows:
        writer.writerow([*(row.group[d] or "" for d in report.group_by), *(getattr(row, f) for f in fields)])
    return buffer.getvalue()
