"""Online evaluation and drift: the scores of sampled live replies, and the drift monitors' check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from keel.evals.drift_watch import DriftReport
from keel.evals.online import OnlineSummary
from keel.server.deps import MonitorReader
from keel.server.services import MonitoringDep

router = APIRouter(prefix="/v1/evals", tags=["evals"])


@router.get("/online", response_model=OnlineSummary)
def get_online_scores(
    monitoring: MonitoringDep,
    caller: MonitorReader,
    hours: Annotated[int, Query(ge=1, le=24 * 90)] = 24,
    recent: Annotated[int, Query(ge=0, le=200)] = 20,
) -> OnlineSummary:
    since = datetime.now(UTC) - timedelta(hours=hours)
    return monitoring.online.summary(caller.tenant, since, recent)


@router.get("/drift", response_model=DriftReport)
def get_drift(monitoring: MonitoringDep, caller: MonitorReader) -> DriftReport:
    """Checks every drift monitor of the caller's tenant now (records nothing; the periodic check
    records verdicts and sends alerts)."""
    return monitoring.drift.check(caller.tenant)
