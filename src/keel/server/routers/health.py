"""Liveness and readiness probes (no authentication: they reveal nothing but status)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel

from keel.server.deps import RuntimeDep
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
async def metrics(runtime: RuntimeDep) -> Response:
    # Unauthenticated like the probes, as Prometheus scrapes it; it holds counts, never content.
    # Some gauges are read from the database when scraped.
    return Response(await off_loop(runtime.metrics.exposition), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready yet: a check is false."}},
)
async def readyz(runtime: RuntimeDep) -> JSONResponse:
    checks = {
        "database": await off_loop(_database_ok, runtime),
        "chat_model": runtime.chat_model.is_ready,
        "embedding_model": runtime.embedding_model.is_ready,
        # Ready means the copilot can answer: the intent and injection classifiers are fitted and the
        # first embedding passes ran, not merely that the model files are loaded.
        "copilot": runtime.copilot.is_ready and runtime.warmed_up,
    }
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "starting", "checks": checks}, status_code=200 if ready else 503
    )


def _database_ok(runtime: RuntimeDep) -> bool:
    try:
        runtime.database.ping()
    except Exception:
        return False
    return True
