"""The numbers behind the dashboard: per-day series and totals from the ledger, replies and feedback."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from keel.store.channels import EVAL_CHANNEL, live_reply, trace_in_channel
from keel.store.engine import Database
from keel.store.models import Feedback, ReviewItem, SpanRecord, SupportReply, UsageRecord
from keel.store.records import copied


def _percentile(values: list[int], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))])


@dataclass
class DaySeries:
    days: list[str] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    cost: list[float] = field(default_factory=list)
    p50_ms: list[float] = field(default_factory=list)
    p95_ms: list[float] = field(default_factory=list)
    cache_hits: list[int] = field(default_factory=list)


@dataclass
class Overview:
    requests: int
    error_rate: float
    p50_ms: float
    p95_ms: float
    cost: Decimal
    cache_hit_ratio: float
    replies: int
    escalation_rate: float
    hallucination_rate: float
    feedback_mean: float | None
    feedback_count: int
    pending_reviews: int
    series: DaySeries


def overview(database: Database, tenant: str, days: int = 14) -> Overview:
    since = datetime.now(UTC) - timedelta(days=days)
    with database.session() as session:
        calls = session.execute(
            select(
                UsageRecord.created_at,
                UsageRecord.latency_ms,
                UsageRecord.outcome,
                UsageRecord.cache,
                UsageRecord.cost_micros,
            ).where(UsageRecord.tenant == tenant, UsageRecord.created_at >= since)
        ).all()
        replies = session.execute(
            select(SupportReply.status, SupportReply.id, ReviewItem.reasons)
            .outerjoin(ReviewItem, ReviewItem.id == SupportReply.review_id)
            .where(SupportReply.tenant == tenant, SupportReply.created_at >= since, live_reply())
        ).all()
        feedback = session.execute(
            select(func.avg(Feedback.score), func.count()).where(
                Feedback.tenant == tenant, Feedback.created_at >= since
            )
        ).one()
        pending = session.scalar(
            select(func.count())
            .select_from(ReviewItem)
            .where(ReviewItem.tenant == tenant, ReviewItem.status == "pending")
        )
    by_day: dict[str, list[tuple[int, str, str, int]]] = defaultdict(list)
    for created, latency, outcome, cache, cost in calls:
        by_day[created.date().isoformat()].append((latency, outcome, cache, cost))
    series = DaySeries()
    for offset in range(days - 1, -1, -1):
        day = (datetime.now(UTC) - timedelta(days=offset)).date().isoformat()
        rows = by_day.get(day, [])
        series.days.append(day[5:])
        series.requests.append(len(rows))
        series.errors.append(sum(1 for r in rows if r[1] != "ok"))
        series.cost.append(sum(r[3] for r in rows) / 1_000_000)
        series.p50_ms.append(_percentile([r[0] for r in rows], 0.5))
        series.p95_ms.append(_percentile([r[0] for r in rows], 0.95))
        series.cache_hits.append(sum(1 for r in rows if r[2] != "miss"))
    latencies = [c.latency_ms for c in calls]
    escalated = sum(1 for r in replies if r.status == "escalated" or r.reasons)
    ungrounded = sum(1 for r in replies if r.reasons and "ungrounded" in r.reasons)
    return Overview(
        requests=len(calls),
        error_rate=sum(1 for c in calls if c.outcome != "ok") / len(calls) if calls else 0.0,
        p50_ms=statistics.median(latencies) if latencies else 0.0,
        p95_ms=_percentile(latencies, 0.95),
        cost=Decimal(sum(c.cost_micros for c in calls)) / Decimal(1_000_000),
        cache_hit_ratio=sum(1 for c in calls if c.cache != "miss") / len(calls) if calls else 0.0,
        replies=len(replies),
        escalation_rate=escalated / len(replies) if replies else 0.0,
        hallucination_rate=ungrounded / len(replies) if replies else 0.0,
        feedback_mean=float(feedback[0]) if feedback[0] is not None else None,
        feedback_count=int(feedback[1]),
        pending_reviews=int(pending or 0),
        series=series,
    )


@dataclass
class TraceSummary:
    trace_id: str
    name: str
    start_time: datetime
    duration_ms: float
    status: str
    model: str
    prompt_version: str
    user: str
    http_status: int | None = None


def recent_traces(
    database: Database,
    tenant: str,
    *,
    status: str | None = None,
    model: str | None = None,
    prompt_version: str | None = None,
    since: datetime | None = None,
    channel: str | None = None,
    limit: int = 50,
) -> list[TraceSummary]:
    """Root spans of the tenant's traces, newest first, with what their child spans say; an evaluation
    run's only with `channel="eval"`, which lists them alone (any other channel: its replies' traces)."""
    query = (
        select(SpanRecord)
        .where(SpanRecord.tenant == tenant, SpanRecord.parent_id.is_(None))
        .order_by(SpanRecord.start_time.desc())
        .limit(limit * 4 if model or prompt_version else limit)
    )
    if status:
        query = query.where(SpanRecord.status == status)
    if since:
        query = query.where(SpanRecord.start_time >= since)
    query = query.where(trace_in_channel(channel) if channel else ~trace_in_channel(EVAL_CHANNEL))
    with database.session() as session:
        roots = list(session.scalars(query))
        children = (
            list(
                session.scalars(
                    select(SpanRecord).where(SpanRecord.trace_id.in_([r.trace_id for r in roots]))
                )
            )
            if roots
            else []
        )
    details: dict[str, dict[str, str]] = defaultdict(dict)
    for span in children:
        attributes = span.attributes
        for key, name in (
            ("gen_ai.request.model", "model"),
            ("keel.prompt.version", "prompt_version"),
            ("keel.user", "user"),
        ):
            if key in attributes:
                details[span.trace_id][name] = str(attributes[key])
    summaries = [
        TraceSummary(
            r.trace_id,
            r.name,
            r.start_time,
            r.duration_ms,
            r.status,
            details[r.trace_id].get("model", ""),
            details[r.trace_id].get("prompt_version", ""),
            details[r.trace_id].get("user", ""),
            _http_status(r.attributes),
        )
        for r in roots
    ]
    if model:
        summaries = [s for s in summaries if s.model == model]
    if prompt_version:
        summaries = [s for s in summaries if s.prompt_version == prompt_version]
    return summaries[:limit]


@dataclass(frozen=True)
class Span:
    """A stored span as the dashboard shows it: a copy of its row."""

    span_id: str
    trace_id: str
    parent_id: str | None
    name: str
    tenant: str | None
    start_time: datetime
    duration_ms: float
    status: str
    attributes: dict[str, Any]

    @classmethod
    def of(cls, row: SpanRecord) -> Span:
        return copied(cls, row)


def trace_spans(database: Database, tenant: str, trace_id: str) -> list[Span]:
    """A trace's spans in start order; empty when the trace is not the tenant's."""
    with database.session() as session:
        spans = [
            Span.of(row)
            for row in session.scalars(
                select(SpanRecord).where(SpanRecord.trace_id == trace_id).order_by(SpanRecord.start_time)
            )
        ]
    roots = [s for s in spans if s.parent_id is None]
    if not roots or roots[0].tenant != tenant:
        return []
    return spans


def _http_status(attributes: dict[str, Any]) -> int | None:
    status = attributes.get("http.response.status_code")
    return status if isinstance(status, int) else None


class Dashboard:
    """The dashboard's reads bound to the runtime's database, for the pages that show them."""

    def __init__(self, database: Database, settle: Callable[[], object] | None = None) -> None:
        self._database = database
        # Stores this process's pending usage records, so the overview counts the latest calls.
        self._settle = settle

    def overview(self, tenant: str, days: int = 14) -> Overview:
        if self._settle is not None:
            self._settle()
        return overview(self._database, tenant, days)

    def traces(self, tenant: str, **filters: Any) -> list[TraceSummary]:
        """`recent_traces` with its keyword filters (status, model, prompt_version, since, channel)."""
        return recent_traces(self._database, tenant, **filters)

    def spans(self, tenant: str, trace_id: str) -> list[Span]:
        return trace_spans(self._database, tenant, trace_id)
