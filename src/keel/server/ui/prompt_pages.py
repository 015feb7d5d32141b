"""The dashboard's Prompts page: prompts and their labels, running and past canaries, experiments; a
prompt's versions, label history and canary judgements; an experiment's report. Administrators can roll
a label back and abort a canary from here (audited like the API)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from keel.keys import Principal, Role
from keel.prompts.prompt_file import to_yaml
from keel.prompts.registry import Actor
from keel.server.services import CanariesDep, ExperimentsDep, PromptRegistryDep
from keel.server.ui.pages import Admin, Viewer, _check_csrf, render

router = APIRouter(prefix="/ui", include_in_schema=False)


def _actor(principal: Principal) -> Actor:
    return Actor(principal.key_id, principal.role == Role.ADMIN)


@router.get("/prompts", response_class=HTMLResponse)
def prompts_page(
    request: Request,
    me: Viewer,
    registry: PromptRegistryDep,
    canaries: CanariesDep,
    experiments: ExperimentsDep,
) -> HTMLResponse:
    return render(
        request,
        "prompts.html",
        me,
        prompts=registry.prompts(me.tenant),
        canaries=canaries.list(me.tenant),
        experiments=experiments.list(me.tenant),
    )


@router.get("/prompts/{name}", response_class=HTMLResponse)
def prompt_page(
    request: Request, name: str, me: Viewer, registry: PromptRegistryDep, rollouts: CanariesDep
) -> HTMLResponse:
    summary = registry.prompt(me.tenant, name)
    versions = registry.versions(me.tenant, name)
    newest = versions[0] if versions else None
    canaries = rollouts.list(me.tenant, name)
    running = [rollouts.status(me.tenant, name, c.label) for c in canaries if c.status == "running"]
    return render(
        request,
        "prompt.html",
        me,
        summary=summary,
        versions=versions,
        history=registry.history(me.tenant, name),
        canaries=canaries,
        running=running,
        text=to_yaml(name, newest.spec, summary.description) if newest else "",
        protected=registry.protected_labels,
    )


@router.get("/experiments/{name}", response_class=HTMLResponse)
def experiment_page(request: Request, name: str, me: Viewer, experiments: ExperimentsDep) -> HTMLResponse:
    report = experiments.report(me.tenant, name)
    return render(request, "experiment.html", me, report=report)


@router.post("/prompts/{name}/labels/{label}/rollback")
def rollback_label(
    request: Request,
    name: str,
    label: str,
    me: Admin,
    registry: PromptRegistryDep,
    csrf: Annotated[str, Form()],
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    _check_csrf(request, me, csrf)
    registry.rollback(me.tenant, name, label, _actor(me), reason or "from the dashboard")
    return RedirectResponse(f"/ui/prompts/{name}", status_code=303)


@router.post("/prompts/{name}/canary/abort")
def abort_canary(
    request: Request,
    name: str,
    me: Admin,
    canaries: CanariesDep,
    csrf: Annotated[str, Form()],
    label: Annotated[str, Form(max_length=64)] = "production",
    reason: Annotated[str, Form(max_length=2000)] = "",
) -> Response:
    _check_csrf(request, me, csrf)
    canaries.abort(me.tenant, name, label, _actor(me), reason or "from the dashboard")
    return RedirectResponse(f"/ui/prompts/{name}", status_code=303)
