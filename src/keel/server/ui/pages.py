"""Dashboard pages: login, overview, trace explorer, review queue, knowledge base. Each page declares
the roles it allows, like the API routes; forms carry a CSRF token and the cookie is SameSite=Strict."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from keel.errors import InvalidRequestError, KeelError, PermissionDeniedError
from keel.keys import Principal, Role
from keel.review.claims import ClaimRules
from keel.review.queue import CLAIMING_ROLES, Decision
from keel.runtime import Runtime
from keel.server.services import (
    CopilotDep,
    DashboardDep,
    DocumentsDep,
    JobsDep,
    KeysDep,
    MonitoringDep,
    ReviewsDep,
)
from keel.server.ui.charts import bar_chart, line_chart
from keel.server.ui.session import COOKIE, MAX_AGE_S, Sessions

templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"))
router = APIRouter(prefix="/ui", include_in_schema=False)


class LoginRequired(Exception):
    """No valid dashboard session: the app answers with a redirect to the login page."""


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.ui_sessions
    return sessions


def page_roles(*roles: Role) -> Callable[[Request], Principal]:
    allowed = frozenset(roles)

    def check(request: Request) -> Principal:
        key_id = _sessions(request).key_id(request.cookies.get(COOKIE))
        principal = _runtime(request).keys.principal(key_id) if key_id else None
        if principal is None:
            raise LoginRequired
        if principal.role not in allowed:
            raise PageDenied(principal, allowed)
        return principal

    check.allowed_roles = allowed  # type: ignore[attr-defined]
    return check


Viewer = Annotated[Principal, Depends(page_roles(*Role))]
Reviewer = Annotated[Principal, Depends(page_roles(Role.ADMIN, Role.REVIEWER))]
Admin = Annotated[Principal, Depends(page_roles(Role.ADMIN))]


class PageDenied(PermissionDeniedError):
    """A logged-in role that may not open a page: the dashboard shows a page saying who may (403), not the
    API's JSON error."""

    def __init__(self, principal: Principal, allowed: frozenset[Role]) -> None:
        super().__init__(f"The role '{principal.role}' may not open this page.")
        self.principal = principal
        self.allowed = sorted(str(role) for role in allowed)


def denied_page(request: Request, exc: Exception) -> HTMLResponse:
    assert isinstance(exc, PageDenied)
    response = render(request, "forbidden.html", exc.principal, allowed=exc.allowed)
    response.status_code = 403
    return response


def render(request: Request, name: str, principal: Principal | None, **context: Any) -> HTMLResponse:
    csrf = _sessions(request).csrf_token(principal.key_id) if principal else ""
    return templates.TemplateResponse(request, name, {"me": principal, "csrf": csrf, **context})


def _check_csrf(request: Request, principal: Principal, token: str) -> None:
    if not _sessions(request).csrf_valid(principal.key_id, token):
        raise PermissionDeniedError("The form has expired; reload the page.", code="csrf_failed")


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return render(request, "login.html", None, error=None)


@router.post("/login")
def login(request: Request, api_key: Annotated[str, Form()]) -> Response:
    try:
        principal = _runtime(request).keys.authenticate(api_key.strip())
    except KeelError:
        response = render(request, "login.html", None, error="That API key is not valid.")
        response.status_code = 401
        return response
    redirect = RedirectResponse("/ui/", status_code=303)
    redirect.set_cookie(
        COOKIE,
        _sessions(request).issue(principal.key_id),
        max_age=MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return redirect


@router.post("/logout")
def logout() -> Response:
    redirect = RedirectResponse("/ui/login", status_code=303)
    redirect.delete_cookie(COOKIE)
    return redirect


@router.get("/", response_class=HTMLResponse)
def overview_page(
    request: Request, me: Viewer, dashboard: DashboardDep, monitoring: MonitoringDep
) -> HTMLResponse:
    data = dashboard.overview(me.tenant)
    s = data.series
    charts = [
        bar_chart("Requests per day", s.days, [float(v) for v in s.requests]),
        line_chart("Latency per day", s.days, {"p50": s.p50_ms, "p95": s.p95_ms}, " ms"),
        bar_chart("Cost per day", s.days, s.cost),
        line_chart(
            "Errors and cache hits per day",
            s.days,
            {"errors": [float(v) for v in s.errors], "cache hits": [float(v) for v in s.cache_hits]},
        ),
    ]
    online = monitoring.online.summary(me.tenant, datetime.now(UTC) - timedelta(hours=24), recent=0)
    drift = monitoring.drift.states(me.tenant)
    return render(request, "overview.html", me, data=data, charts=charts, online=online, drift=drift)


@router.get("/traces", response_class=HTMLResponse)
def traces_page(
    request: Request,
    me: Viewer,
    dashboard: DashboardDep,
    status: str | None = None,
    model: str | None = None,
    prompt_version: str | None = None,
    channel: str | None = None,
    hours: int = 24,
) -> HTMLResponse:
    since = datetime.now(UTC) - timedelta(hours=max(1, min(hours, 24 * 90)))
    traces = dashboard.traces(
        me.tenant,
        status=status or None,
        model=model or None,
        prompt_version=prompt_version or None,
        since=since,
        channel=channel or None,
    )
    filters = {
        "status": status or "",
        "model": model or "",
        "prompt_version": prompt_version or "",
        "channel": channel or "",
        "hours": hours,
    }
    return render(request, "traces.html", me, traces=traces, filters=filters)


@router.get("/traces/{trace_id}", response_class=HTMLResponse)
def trace_page(request: Request, trace_id: str, me: Viewer, dashboard: DashboardDep) -> HTMLResponse:
    spans = dashboard.spans(me.tenant, trace_id)
    if not spans:
        return render(request, "missing.html", me, what="trace")
    start = min(s.start_time for s in spans)
    total = max((s.start_time - start).total_seconds() * 1000 + s.duration_ms for s in spans) or 1.0
    depth: dict[str, int] = {}
    rows = []
    for span in spans:
        depth[span.span_id] = depth.get(span.parent_id or "", -1) + 1 if span.parent_id else 0
        offset = (span.start_time - start).total_seconds() * 1000
        rows.append(
            {
                "span": span,
                "depth": depth[span.span_id],
                "left": 100 * offset / total,
                "width": max(0.5, 100 * span.duration_ms / total),
            }
        )
    return render(request, "trace.html", me, trace_id=trace_id, rows=rows, total=total)


@router.get("/reviews", response_class=HTMLResponse)
def reviews_page(
    request: Request, me: Reviewer, reviews: ReviewsDep, status: str = "pending"
) -> HTMLResponse:
    items = reviews.list(me.tenant, status=status or None)
    return render(request, "reviews.html", me, items=items, status=status)


@router.get("/reviews/{review_id}", response_class=HTMLResponse)
def review_page(
    request: Request,
    review_id: str,
    me: Reviewer,
    reviews: ReviewsDep,
    copilot: CopilotDep,
    key_store: KeysDep,
) -> HTMLResponse:
    item = reviews.get(me.tenant, review_id)
    reply = copilot.get(me.tenant, item.reply_id)
    claim = reviews.claim_of(item)
    keys = {key.id: key for key in key_store.list(me.tenant, include_revoked=True)}
    # Administrators may hand the item to any active key that can review.
    reviewers = (
        [k for k in keys.values() if k.revoked_at is None and k.role in CLAIMING_ROLES]
        if me.role == Role.ADMIN
        else []
    )
    return render(
        request,
        "review.html",
        me,
        item=item,
        reply=reply,
        claim=claim,
        holder=keys.get(claim.holder) if claim.holder else None,
        can_claim=ClaimRules.may_claim(item.status, item.claimed_by, claim.state, me.key_id),
        reviewers=reviewers,
        error=None,
    )


@router.post("/reviews/{review_id}/claim")
def claim(
    request: Request, review_id: str, me: Reviewer, reviews: ReviewsDep, csrf: Annotated[str, Form()]
) -> Response:
    _check_csrf(request, me, csrf)
    reviews.claim(me.tenant, review_id, me.key_id)
    return RedirectResponse(f"/ui/reviews/{review_id}", status_code=303)


@router.post("/reviews/{review_id}/release")
def release(
    request: Request, review_id: str, me: Admin, reviews: ReviewsDep, csrf: Annotated[str, Form()]
) -> Response:
    _check_csrf(request, me, csrf)
    reviews.release(me.tenant, review_id, me.key_id)
    return RedirectResponse(f"/ui/reviews/{review_id}", status_code=303)


@router.post("/reviews/{review_id}/assign")
def assign(
    request: Request,
    review_id: str,
    me: Admin,
    reviews: ReviewsDep,
    csrf: Annotated[str, Form()],
    reviewer: Annotated[str, Form(max_length=40)],
) -> Response:
    _check_csrf(request, me, csrf)
    reviews.assign(me.tenant, review_id, reviewer, me.key_id)
    return RedirectResponse(f"/ui/reviews/{review_id}", status_code=303)


@router.post("/reviews/{review_id}/decision")
async def decide(
    request: Request,
    review_id: str,
    me: Reviewer,
    reviews: ReviewsDep,
    csrf: Annotated[str, Form()],
    action: Annotated[str, Form()],
    final_reply: Annotated[str | None, Form()] = None,
    note: Annotated[str | None, Form()] = None,
) -> Response:
    _check_csrf(request, me, csrf)
    try:
        decision = Decision.model_validate(
            {"action": action, "final_reply": final_reply if action == "edit" else None, "note": note or None}
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "action"
        raise InvalidRequestError(f"{where}: {first['msg']}", param=where) from exc
    await reviews.decide(me.tenant, review_id, me.key_id, decision)
    return RedirectResponse(f"/ui/reviews/{review_id}", status_code=303)


@router.get("/knowledge", response_class=HTMLResponse)
def knowledge_page(request: Request, me: Viewer, documents: DocumentsDep, jobs: JobsDep) -> HTMLResponse:
    listed = documents.page(me.tenant, limit=200, order="recent").documents
    return render(request, "knowledge.html", me, documents=listed, jobs=jobs.recent(me.tenant, limit=20))
