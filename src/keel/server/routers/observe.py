"""Feedback and usage reports."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from keel.errors import InvalidRequestError
from keel.observe.feedback import FeedbackRequest, FeedbackStore
from keel.observe.usage import Dimension, UsageReport, to_csv, usage_report
from keel.server.deps import AdminCaller, FeedbackCaller, RuntimeDep

router = APIRouter(prefix="/v1", tags=["observe"])


@router.post("/feedback", status_code=201)
def create_feedback(body: FeedbackRequest, runtime: RuntimeDep, caller: FeedbackCaller) -> dict[str, Any]:
    try:
        score = body.normalised()
    except ValueError as exc:
        raise InvalidRequestError(str(exc), param="score") from exc
    source = "reviewer" if caller.role in ("reviewer", "admin") else "user"
    feedback = FeedbackStore(runtime.database).record(caller.tenant, body, source)
    runtime.metrics.feedback.labels(source).observe(score)
    return {
        "id": feedback.id,
        "object": "feedback",
        "score": score,
        "reply_id": feedback.reply_id,
        "prompt_version": feedback.prompt_version,
    }


@router.get("/usage", response_model=UsageReport)
def get_usage(
    runtime: RuntimeDep,
    caller: AdminCaller,
    group_by: Annotated[list[Dimension], Query()] = ["day", "model"],  # noqa: B006 - FastAPI copies defaults
    since: datetime | None = None,
    until: datetime | None = None,
    format: Annotated[str, Query(pattern="^(json|csv)$")] = "json",
) -> UsageReport | PlainTextResponse:
    report = usage_report(runtime.database, caller.tenant, group_by, since, until)
    if format == "csv":
        return PlainTextResponse(
            to_csv(report),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="keel-usage.csv"'},
        )
    return report
