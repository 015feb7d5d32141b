"""What the calls of each arm of an experiment (or canary) did in a window, read from where Keel records
it: the usage ledger (errors, latency, cost), the copilot's replies and their reviews (escalations,
grounding failures), feedback and online evaluation scores, joined by trace id. Reads only."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from keel.store.engine import Database
from keel.store.models import Feedback, ReviewItem, SupportReply, UsageRecord
from keel.store.online_eval_models import OnlineScore

# A rating below the middle of the scale (thumbs down, one or two stars) is negative feedback.
NEGATIVE_BELOW = 0.5
_CHUNK = 500


@dataclass
class ArmSample:
    arm: str
    requests: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    # Calls that produced a copilot reply, and how many of those were escalated or ungrounded.
    replies: int = 0
    escalations: int = 0
    grounding_failures: int = 0
    # One score per call that got feedback (the mean when it got several).
    feedback: list[float] = field(default_factory=list)
    groundedness: list[float] = field(default_factory=list)
    citation_precision: list[float] = field(default_factory=list)

    @property
    def negative_feedback(self) -> int:
        return sum(score < NEGATIVE_BELOW for score in self.feedback)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def read_arms(
    database: Database,
    tenant: str,
    experiment: str,
    since: datetime,
    until: datetime,
    max_calls: int = 50_000,
) -> dict[str, ArmSample]:
    """Every arm's sample in [since, until): the newest `max_calls` calls at most."""
    arms: dict[str, ArmSample] = {}
    traces: dict[str, str] = {}
    with database.reading() as session:
        rows = session.execute(
            select(
                UsageRecord.experiment_arm,
                UsageRecord.outcome,
                UsageRecord.latency_ms,
                UsageRecord.cost_micros,
                UsageRecord.trace_id,
            )
            .where(
                UsageRecord.tenant == tenant,
                UsageRecord.experiment == experiment,
                UsageRecord.created_at >= since,
                UsageRecord.created_at < until,
            )
            .order_by(UsageRecord.created_at.desc())
            .limit(max_calls)
        ).all()
        for arm_name, outcome, latency, cost, trace_id in rows:
            sample = arms.setdefault(arm_name or "", ArmSample(arm_name or ""))
            sample.requests += 1
            sample.errors += outcome != "ok"
            sample.latencies_ms.append(float(latency))
            sample.costs.append(cost / 1_000_000)
            if trace_id:
                traces[trace_id] = sample.arm
        _add_replies(session, tenant, traces, arms)
        _add_feedback(session, tenant, traces, arms)
        _add_online_scores(session, tenant, traces, arms)
    return arms


def _add_replies(session: Session, tenant: str, traces: dict[str, str], arms: dict[str, ArmSample]) -> None:
    for chunk in _chunks(list(traces)):
        rows = session.execute(
            select(SupportReply.trace_id, SupportReply.status, ReviewItem.reasons)
            .outerjoin(ReviewItem, ReviewItem.id == SupportReply.review_id)
            .where(SupportReply.tenant == tenant, SupportReply.trace_id.in_(chunk))
        ).all()
        for trace_id, status, reasons in rows:
            sample = arms[traces[trace_id]]
            sample.replies += 1
            sample.escalations += status == "escalated"
            sample.grounding_failures += "ungrounded" in (reasons or [])


def _add_feedback(session: Session, tenant: str, traces: dict[str, str], arms: dict[str, ArmSample]) -> None:
    scores: dict[str, list[float]] = defaultdict(list)
    for chunk in _chunks(list(traces)):
        for trace_id, score in session.execute(
            select(Feedback.trace_id, Feedback.score).where(
                Feedback.tenant == tenant, Feedback.trace_id.in_(chunk)
            )
        ):
            scores[trace_id].append(float(score))
    for trace_id, given in scores.items():
        arms[traces[trace_id]].feedback.append(sum(given) / len(given))


def _add_online_scores(
    session: Session, tenant: str, traces: dict[str, str], arms: dict[str, ArmSample]
) -> None:
    for chunk in _chunks(list(traces)):
        for trace_id, groundedness, precision in session.execute(
            select(OnlineScore.trace_id, OnlineScore.groundedness, OnlineScore.citation_precision).where(
                OnlineScore.tenant == tenant, OnlineScore.trace_id.in_(chunk)
            )
        ):
            sample = arms[traces[trace_id]]
            if groundedness is not None:
                sample.groundedness.append(float(groundedness))
            if precision is not None:
                sample.citation_precision.append(float(precision))
