"""Liveness and readiness probes (no authentication: they reveal nothing but status)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from keel.server.services import MetricsDep, ReadinessDep
from keel.server.threads import off_loop

router = APIRouter(tags=["ops"])


class Readiness(BaseModel):
    status: Literal["ready", "starting"]
    # Each check by name: the database answers, each model is loaded, ...
    checks: dict[str, bool]


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/metrics", include_in_schema=False)
async def metrics(metrics: MetricsDep) -> Response:
    # Unauthenticated like the probes, as Prometheus scrapes it; it holds counts, never content.
    # Some gauges are read from the database when scraped.
    return Response(await off_loop(metrics.exposition), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready yet: a check is false."}},
)
async def readyz(readiness: ReadinessDep) -> JSONResponse:
    # The database check is a round trip: the checks run off the event loop.
    checks = await off_loop(readiness)
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "starting", "checks": checks}, status_code=200 if ready else 503
    )
