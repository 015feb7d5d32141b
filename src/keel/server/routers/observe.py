"""Feedback and usage reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from keel.errors import InvalidRequestError
from keel.observe.feedback import FeedbackRequest
from keel.observe.usage import Dimension, UsageReport, to_csv
from keel.server.deps import AdminCaller, FeedbackCaller
from keel.server.services import FeedbackDep, MetricsDep, UsageDep

router = APIRouter(prefix="/v1", tags=["observe"])


@router.post("/feedback", status_code=201)
def create_feedback(
    body: FeedbackRequest, store: FeedbackDep, metrics: MetricsDep, caller: FeedbackCaller
) -> dict[str, Any]:
    try:
        score = body.normalised()
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="score") from exc
    source = "reviewer" if caller.role in ("reviewer", "admin") else "user"
    feedback = store.record(caller.tenant, body, source)
    metrics.feedback.labels(source).observe(score)
    return {
        "id": feedback.id,
        "object": "feedback",
        "score": score,
        "reply_id": feedback.reply_id,
        "prompt_version": feedback.prompt_version,
    }


@router.get("/usage", response_model=UsageReport)
def get_usage(
    usage: UsageDep,
    caller: AdminCaller,
    group_by: Annotated[list[Dimension], Query()] = ["day", "model"],  # noqa: B006 - FastAPI copies defaults
    since: datetime | None = None,
    until: datetime | None = None,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> UsageReport | PlainTextResponse:
    report = usage.report(caller.tenant, group_by, since, until)
    if format == "csv":
        return PlainTextResponse(
            to_csv(report),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="keel-usage.csv"'},
        )
    return report
