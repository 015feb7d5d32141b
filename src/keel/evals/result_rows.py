"""A run's result rows as the unit of durable work: claimed with a conditional UPDATE, kept claimed by a
heartbeat, stored with their scores in the transaction that counts them, released when a worker stops.

Every write is conditional on the row's status, so a row taken over after its claim went stale is
stored and counted by one consumer only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update

from keel.store.engine import Database
from keel.store.eval_models import EvalResult, EvalRun


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Outcome:
    """What one finished trial stores."""

    output: dict[str, Any]
    scores: dict[str, float | None]
    trace_id: str | None
    latency_s: float
    cost_micros: int
    judge_cost_micros: int


class ResultRows:
    def __init__(self, database: Database) -> None:
        self._database = database

    def reclaim_stale(self, run_id: str, stale_after_s: float) -> None:
        """Rows claimed longer ago than `stale_after_s` lost their consumer: pending again."""
        cutoff = now() - timedelta(seconds=stale_after_s)
        with self._database.session() as session:
            session.execute(
                update(EvalResult)
                .where(
                    EvalResult.run_id == run_id,
                    EvalResult.status == "processing",
                    EvalResult.claimed_at < cutoff,
                )
                .values(status="pending", claimed_at=None)
            )

    def claim(self, result_id: str) -> bool:
        with self._database.session() as session:
            claimed = session.execute(
                update(EvalResult)
                .where(EvalResult.id == result_id, EvalResult.status == "pending")
                .values(status="processing", claimed_at=now())
            )
            return bool(getattr(claimed, "rowcount", 0) == 1)

    def release(self, result_ids: set[str]) -> None:
        if not result_ids:
            return
        with self._database.session() as session:
            session.execute(
                update(EvalResult)
                .where(EvalResult.id.in_(result_ids), EvalResult.status == "processing")
                .values(status="pending", claimed_at=None)
            )

    def beat(self, run_id: str, held: set[str]) -> None:
        with self._database.session() as session:
            session.execute(update(EvalRun).where(EvalRun.id == run_id).values(heartbeat_at=now()))
            if held:
                session.execute(
                    update(EvalResult)
                    .where(EvalResult.id.in_(held), EvalResult.status == "processing")
                    .values(claimed_at=now())
                )

    def store(self, run_id: str, result_id: str, outcome: Outcome) -> None:
        with self._database.session() as session:
            stored = session.execute(
                update(EvalResult)
                .where(EvalResult.id == result_id, EvalResult.status == "processing")
                .values(
                    status="done",
                    output=outcome.output,
                    scores=outcome.scores,
                    trace_id=outcome.trace_id,
                    latency_ms=outcome.latency_s * 1000,
                    cost_micros=outcome.cost_micros,
                    judge_cost_micros=outcome.judge_cost_micros,
                    finished_at=now(),
                )
            )
            if getattr(stored, "rowcount", 0) == 1:
                session.execute(
                    update(EvalRun)
                    .where(EvalRun.id == run_id)
                    .values(
                        done=EvalRun.done + 1,
                        cost_micros=EvalRun.cost_micros + outcome.cost_micros,
                        judge_cost_micros=EvalRun.judge_cost_micros + outcome.judge_cost_micros,
                    )
                )

    def store_failure(self, run_id: str, result_id: str, error: str, trace_id: str | None) -> None:
        with self._database.session() as session:
            stored = session.execute(
                update(EvalResult)
                .where(EvalResult.id == result_id, EvalResult.status == "processing")
                .values(status="failed", error=error[:2000], trace_id=trace_id, finished_at=now())
            )
            if getattr(stored, "rowcount", 0) == 1:
                session.execute(update(EvalRun).where(EvalRun.id == run_id).values(failed=EvalRun.failed + 1))
