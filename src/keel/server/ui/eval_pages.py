"""The dashboard's Evaluations page: datasets, runs, a run's report and a comparison of two runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from keel.evals.service import compare_runs
from keel.server.services import EvaluationDep
from keel.server.ui.eval_reports import comparison_report, run_report
from keel.server.ui.pages import Viewer, _sessions, render

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/evals", response_class=HTMLResponse)
def evals_page(request: Request, me: Viewer, evals: EvaluationDep) -> HTMLResponse:
    datasets = evals.datasets.list_all(me.tenant)
    names = {d.id: d.name for d in datasets}
    runs = evals.runs.list_runs(me.tenant, limit=100)
    return render(request, "evals.html", me, datasets=datasets, runs=runs, names=names)


@router.get("/evals/runs/{run_id}", response_class=HTMLResponse)
def run_page(request: Request, run_id: str, me: Viewer, evals: EvaluationDep) -> HTMLResponse:
    runs = evals.runs
    run = runs.get(me.tenant, run_id)
    csrf = _sessions(request).csrf_token(me.key_id)
    return HTMLResponse(
        run_report(run, runs.results(me.tenant, run_id), runs.items_of(run), me=me, csrf=csrf)
    )


@router.get("/evals/compare", response_class=HTMLResponse)
def compare_page(
    request: Request,
    me: Viewer,
    evals: EvaluationDep,
    baseline: Annotated[str, Query(max_length=40)],
    candidate: Annotated[str, Query(max_length=40)],
) -> HTMLResponse:
    comparison = compare_runs(evals.runs, me.tenant, baseline, candidate)
    csrf = _sessions(request).csrf_token(me.key_id)
    return HTMLResponse(comparison_report(comparison, me=me, csrf=csrf))
