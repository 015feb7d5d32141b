"""Knowledge-base routes: upload documents (as jobs), list and delete them, follow jobs, search."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.datastructures import FormData

from keel.errors import InvalidRequestError
from keel.jobs.ingestion_jobs import Job, NewDocument
from keel.keys import Role
from keel.knowledge.catalog import DocumentSummary
from keel.knowledge.retrieval import SearchRequest, SearchResponse, scope_for
from keel.server.deps import AnyCaller, KnowledgeWriter, SearchCaller
from keel.server.services import DocumentsDep, IngestionDep, JobsDep, RetrieverDep
from keel.server.threads import off_loop

router = APIRouter(prefix="/v1", tags=["knowledge"])


# Metadata is a flat JSON object: strings, finite numbers, booleans, null, or lists of those.
_MetaScalar = (
    Annotated[str, Field(max_length=4000)] | bool | int | Annotated[float, Field(allow_inf_nan=False)] | None
)
DocumentMetadata = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=200)], _MetaScalar | list[_MetaScalar]],
    Field(max_length=100),
]
_METADATA: TypeAdapter[dict[str, Any]] = TypeAdapter(DocumentMetadata)
MAX_SOURCE_CHARS = 1000
MAX_DOC_TYPE_CHARS = 32
MAX_ACL_GROUPS = 200


class DocumentUpload(BaseModel):
    source: str = Field(min_length=1, max_length=MAX_SOURCE_CHARS)
    text: str = Field(min_length=1)
    doc_type: str | None = Field(None, max_length=MAX_DOC_TYPE_CHARS)
    metadata: DocumentMetadata = Field(default_factory=dict)
    acl: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=MAX_ACL_GROUPS)


class DocumentBatch(BaseModel):
    documents: list[DocumentUpload] = Field(min_length=1, max_length=1000)


def _upload_request_body() -> dict[str, Any]:
    """The route reads its body itself (JSON or multipart): the OpenAPI document still says what it takes."""
    one = DocumentUpload.model_json_schema()
    batch = DocumentBatch.model_json_schema(ref_template="#/$defs/{model}")
    batch["properties"]["documents"]["items"] = one
    batch.pop("$defs", None)
    binary = {"type": "string", "format": "binary"}
    form = {
        "type": "object",
        "properties": {
            "file": binary,
            "files": {"type": "array", "items": binary},
            "doc_type": {"type": "string", "maxLength": MAX_DOC_TYPE_CHARS},
            "acl": {"type": "string", "description": "ACL groups, comma-separated"},
            "metadata": {"type": "string", "description": "A flat JSON object, as text"},
        },
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"anyOf": [one, batch]}},
                "multipart/form-data": {"schema": form},
            },
        }
    }


class JobItemView(BaseModel):
    source: str
    status: str
    outcome: str | None
    error: str | None
    document_id: str | None


class JobView(BaseModel):
    id: str
    object: Literal["job"] = "job"
    kind: str
    status: str
    total: int
    done: int
    failed: int
    pending: int
    created_at: datetime
    finished_at: datetime | None
    items: list[JobItemView]

    @classmethod
    def of(cls, job: Job) -> JobView:
        statuses = [item.status for item in job.items]
        return cls(
            id=job.id,
            kind=job.kind,
            status=job.status,
            total=job.total,
            done=statuses.count("done"),
            failed=statuses.count("failed"),
            pending=statuses.count("pending"),
            created_at=job.created_at,
            finished_at=job.finished_at,
            items=[
                JobItemView(
                    source=i.source,
                    status=i.status,
                    outcome=i.outcome,
                    error=i.error,
                    document_id=i.document_id,
                )
                for i in job.items
            ],
        )


class DocumentView(DocumentSummary):
    object: Literal["document"] = "document"

    @classmethod
    def of(cls, document: DocumentSummary) -> DocumentView:
        return cls.model_validate(document, from_attributes=True)


class DocumentList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DocumentView]
    total: int


async def _uploads(request: Request) -> list[NewDocument]:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _form_uploads(await request.form())
    try:
        payload = await request.json()
        batch = DocumentBatch.model_validate(
            payload if isinstance(payload, dict) and "documents" in payload else {"documents": [payload]}
        )
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidRequestError(
            "Send JSON {source, text, ...} or {documents: [...]}, or multipart files."
        ) from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequestError(f"{where}: {first['msg']}", param=where) from exc
    return [
        # A source without a file suffix ("faq-42") is plain text unless the caller names a type.
        NewDocument(
            source=d.source,
            data=d.text.encode(),
            doc_type=d.doc_type or (None if _has_suffix(d.source) else "text"),
            meta=d.metadata,
            acl=d.acl,
        )
        for d in batch.documents
    ]


async def _form_uploads(form: FormData) -> list[NewDocument]:
    """Every field is checked here, so a job is queued only for documents it can ingest."""
    files = [
        value for key, value in form.multi_items() if key in ("file", "files") and not isinstance(value, str)
    ]
    if not files:
        raise InvalidRequestError("Send the documents as form files named 'file' or 'files'.", param="file")
    doc_type = _form_text(form, "doc_type")
    if doc_type is not None and len(doc_type) > MAX_DOC_TYPE_CHARS:
        raise InvalidRequestError(
            f"'doc_type' has more than {MAX_DOC_TYPE_CHARS} characters.", param="doc_type"
        )
    acl = [g.strip() for g in (_form_text(form, "acl") or "").split(",") if g.strip()]
    if len(acl) > MAX_ACL_GROUPS or any(len(group) > 200 for group in acl):
        raise InvalidRequestError(
            f"'acl' takes at most {MAX_ACL_GROUPS} comma-separated groups of at most 200 characters.",
            param="acl",
        )
    try:
        meta = _METADATA.validate_json(_form_text(form, "metadata") or "{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequestError(
            "'metadata' must be a JSON object of at most 100 keys whose values are strings, numbers, "
            f"booleans, null or lists of those ({where + ': ' if where else ''}{first['msg']}).",
            param="metadata",
        ) from exc
    for upload in files:
        if len(upload.filename or "") > MAX_SOURCE_CHARS:
            raise InvalidRequestError(
                f"A file name has more than {MAX_SOURCE_CHARS} characters.", param="file"
            )
    return [
        NewDocument(
            source=upload.filename or "upload",
            data=await upload.read(),
            doc_type=doc_type or None,
            meta=meta,
            acl=acl,
        )
        for upload in files
    ]


def _form_text(form: FormData, name: str) -> str | None:
    value = form.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequestError(f"'{name}' must be a form field, not a file.", param=name)
    return value


def _has_suffix(source: str) -> bool:
    return "." in source.rsplit("/", 1)[-1]


@router.post("/documents", status_code=202, response_model=JobView, openapi_extra=_upload_request_body())
async def upload_documents(
    request: Request, ingestion: IngestionDep, jobs: JobsDep, caller: KnowledgeWriter
) -> JobView:
    documents = await _uploads(request)
    for document in documents:
        ingestion.check_size(len(document.data), document.source)
    job = await off_loop(jobs.submit, caller.tenant, documents)
    return JobView.of(await off_loop(jobs.get, caller.tenant, job.id))


@router.get("/jobs/{job_id}", response_model=JobView)
def get_job(job_id: str, jobs: JobsDep, caller: AnyCaller) -> JobView:
    return JobView.of(jobs.get(caller.tenant, job_id))


@router.get("/documents", response_model=DocumentList)
def list_documents(
    documents: DocumentsDep,
    caller: AnyCaller,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    doc_type: Annotated[str | None, Query(max_length=MAX_DOC_TYPE_CHARS)] = None,
) -> DocumentList:
    page = documents.page(caller.tenant, limit=limit, offset=offset, doc_type=doc_type)
    return DocumentList(data=[DocumentView.of(d) for d in page.documents], total=page.total)


@router.get("/documents/{document_id}", response_model=DocumentView)
def get_document(document_id: str, documents: DocumentsDep, caller: AnyCaller) -> DocumentView:
    return DocumentView.of(documents.get(caller.tenant, document_id))


@router.delete("/documents/{document_id}", status_code=204)
def delete_document(document_id: str, documents: DocumentsDep, caller: KnowledgeWriter) -> Response:
    documents.delete(caller.tenant, document_id, actor=caller.key_id)
    return Response(status_code=204)


@router.post("/search", response_model=SearchResponse)
async def search(body: SearchRequest, retriever: RetrieverDep, caller: SearchCaller) -> SearchResponse:
    scope = scope_for(caller.tenant, body, sees_everything=caller.role == Role.ADMIN)
    return await retriever.search(body, scope)
