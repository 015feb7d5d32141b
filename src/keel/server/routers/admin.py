"""Administration: API keys, data-subject requests, retention and the audit log. Every change is audited."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from keel.errors import NotFoundError
from keel.keys import Role
from keel.server.deps import AdminCaller
from keel.server.services import AuditDep, KeysDep, RetentionDep, SubjectsDep
from keel.server.threads import off_loop

router = APIRouter(prefix="/v1/admin", tags=["admin"])


class KeyRequest(BaseModel):
    role: Role
    name: str = Field("", max_length=200)


class KeyView(BaseModel):
    id: str
    object: Literal["api_key"] = "api_key"
    prefix: str
    tenant: str
    role: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    # Only in the answer that creates the key: it is never shown again.
    secret: str | None = None


@router.post("/keys", status_code=201, response_model=KeyView)
def create_key(body: KeyRequest, keys: KeysDep, caller: AdminCaller) -> KeyView:
    issued = keys.create(caller.tenant, body.role, body.name, actor=caller.key_id)
    record = issued.record
    return KeyView(
        id=record.id,
        prefix=record.prefix,
        tenant=record.tenant,
        role=record.role,
        name=record.name,
        created_at=record.created_at,
        revoked_at=None,
        secret=issued.secret,
    )


@router.get("/keys")
def list_keys(keys: KeysDep, caller: AdminCaller) -> dict[str, Any]:
    listed = keys.list(caller.tenant, include_revoked=True)
    return {
        "object": "list",
        "data": [
            KeyView(
                id=k.id,
                prefix=k.prefix,
                tenant=k.tenant,
                role=k.role,
                name=k.name,
                created_at=k.created_at,
                revoked_at=k.revoked_at,
            ).model_dump(mode="json", exclude={"secret"})
            for k in listed
        ],
    }


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(key_id: str, keys: KeysDep, caller: AdminCaller) -> Response:
    if not any(k.id == key_id for k in keys.list(caller.tenant, include_revoked=True)):
        raise NotFoundError(f"No API key '{key_id}'.", code="key_not_found")
    keys.revoke(key_id, actor=caller.key_id)
    return Response(status_code=204)


@router.get("/subjects/{end_user_id}/export")
def export_subject(end_user_id: str, subjects: SubjectsDep, caller: AdminCaller) -> dict[str, Any]:
    return subjects.export(caller.tenant, end_user_id, actor=caller.key_id)


@router.delete("/subjects/{end_user_id}")
def erase_subject(end_user_id: str, subjects: SubjectsDep, caller: AdminCaller) -> dict[str, Any]:
    counts = subjects.erase(caller.tenant, end_user_id, actor=caller.key_id)
    return {"object": "subject.erasure", "deleted": counts}


@router.post("/retention/purge")
async def purge_now(retention: RetentionDep, caller: AdminCaller) -> dict[str, Any]:
    counts = await off_loop(retention.purge, actor=caller.key_id, tenant=caller.tenant)
    return {"object": "retention.purge", "deleted": counts}


@router.get("/audit")
def audit_entries(
    audit: AuditDep, caller: AdminCaller, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    entries = audit.entries(caller.tenant, limit)
    return {
        "object": "list",
        "data": [
            {
                "seq": e.seq,
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "details": e.details,
                "created_at": e.created_at,
                "hash": e.hash,
            }
            for e in entries
        ],
    }


@router.get("/audit/verify")
def audit_verify(audit: AuditDep, caller: AdminCaller) -> dict[str, Any]:
    result = audit.verify()
    return {
        "ok": result.ok,
        "entries": result.entries,
        "first_broken_seq": result.first_broken_seq,
        "problem": result.problem,
    }
