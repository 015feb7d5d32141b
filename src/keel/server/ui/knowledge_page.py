"""The dashboard's knowledge actions: upload a document, delete one, search, and a job's page with the
error of each item that failed. Roles as in the API: everyone sees, the knowledge writers (admin, app)
upload and delete, the searching roles (admin, app, reviewer) search; forms carry the CSRF token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from keel.errors import InvalidRequestError, NotFoundError
from keel.jobs.ingestion_jobs import NewDocument
from keel.keys import Principal, Role
from keel.knowledge.retrieval import SearchRequest, scope_for
from keel.server.services import DocumentsDep, IngestionDep, JobsDep, RetrieverDep
from keel.server.threads import off_loop
from keel.server.ui.pages import Viewer, _check_csrf, page_roles, render

router = APIRouter(prefix="/ui", include_in_schema=False)

Editor = Annotated[Principal, Depends(page_roles(Role.ADMIN, Role.APP))]
Searcher = Annotated[Principal, Depends(page_roles(Role.ADMIN, Role.APP, Role.REVIEWER))]
MAX_ACL_GROUPS = 200


@router.post("/knowledge/upload")
async def upload_document(
    request: Request,
    me: Editor,
    ingestion: IngestionDep,
    jobs: JobsDep,
    csrf: Annotated[str, Form()],
    file: UploadFile,
    doc_type: Annotated[str, Form(max_length=32)] = "",
    acl: Annotated[str, Form(max_length=20_000)] = "",
) -> Response:
    _check_csrf(request, me, csrf)
    source = file.filename or ""
    if not source or len(source) > 1000:
        raise InvalidRequestError("Choose a file (its name at most 1000 characters).", param="file")
    groups = [group.strip() for group in acl.split(",") if group.strip()]
    if len(groups) > MAX_ACL_GROUPS or any(len(group) > 200 for group in groups):
        raise InvalidRequestError(
            f"'acl' takes at most {MAX_ACL_GROUPS} comma-separated groups of at most 200 characters.",
            param="acl",
        )
    data = await file.read()
    ingestion.check_size(len(data), source)
    document = NewDocument(source=source, data=data, doc_type=doc_type or None, meta={}, acl=groups)
    job = await off_loop(jobs.submit, me.tenant, [document])
    return RedirectResponse(f"/ui/knowledge/jobs/{job.id}", status_code=303)


@router.post("/knowledge/documents/{document_id}/delete")
def delete_document(
    request: Request, document_id: str, me: Editor, documents: DocumentsDep, csrf: Annotated[str, Form()]
) -> Response:
    _check_csrf(request, me, csrf)
    documents.delete(me.tenant, document_id, actor=me.key_id)
    return RedirectResponse("/ui/knowledge", status_code=303)


@router.get("/knowledge/search", response_class=HTMLResponse)
async def search_page(
    request: Request,
    me: Searcher,
    retriever: RetrieverDep,
    q: Annotated[str, Query(max_length=4000)] = "",
    mode: Annotated[str, Query(pattern="^(hybrid|keyword|vector)$")] = "hybrid",
) -> HTMLResponse:
    response = None
    if q.strip():
        search = SearchRequest.model_validate({"query": q.strip(), "mode": mode, "k": 10})
        scope = scope_for(me.tenant, search, sees_everything=me.role == Role.ADMIN)
        response = await retriever.search(search, scope)
    return render(request, "knowledge_search.html", me, q=q, mode=mode, response=response)


@router.get("/knowledge/jobs/{job_id}", response_class=HTMLResponse)
def job_page(request: Request, job_id: str, me: Viewer, jobs: JobsDep) -> HTMLResponse:
    try:
        job = jobs.get(me.tenant, job_id)
    except NotFoundError:
        page = render(request, "missing.html", me, what="job")
        page.status_code = 404
        return page
    items = sorted(job.items, key=lambda item: (item.status != "failed", item.source))
    failed = sum(item.status == "failed" for item in items)
    return render(request, "knowledge_job.html", me, job=job, items=items, failed=failed)
