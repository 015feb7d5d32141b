"""Administration: API keys, data-subject requests, retention and the audit log. Every change is audited."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field

from keel.errors import NotFoundError
from keel.governance.retention import purge
from keel.governance.subjects import subject_hash
from keel.keys import Role
from keel.server.deps import AdminCaller, RuntimeDep

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
def create_key(body: KeyRequest, runtime: RuntimeDep, caller: AdminCaller) -> KeyView:
    issued = runtime.keys.create(caller.tenant, body.role, body.name)
    runtime.audit.append(
        caller.tenant, caller.key_id, "key.create", issued.record.id, {"role": body.role.value}
    )
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
def list_keys(runtime: RuntimeDep, caller: AdminCaller) -> dict[str, Any]:
    keys = runtime.keys.list(caller.tenant, include_revoked=True)
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
            for k in keys
        ],
    }


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(key_id: str, runtime: RuntimeDep, caller: AdminCaller) -> Response:
    if not any(k.id == key_id for k in runtime.keys.list(caller.tenant, include_revoked=True)):
        raise NotFoundError(f"No API key '{key_id}'.", code="key_not_found")
    runtime.keys.revoke(key_id)
    runtime.audit.append(caller.tenant, caller.key_id, "key.revoke", key_id)
    return Response(status_code=204)


@router.get("/subjects/{end_user_id}/export")
def export_subject(end_user_id: str, runtime: RuntimeDep, caller: AdminCaller) -> dict[str, Any]:
    data = runtime.subjects.export(caller.tenant, end_user_id)
    runtime.audit.append(
        caller.tenant, caller.key_id, "subject.export", subject_hash(caller.tenant, end_user_id)
    )
    return data


@router.delete("/subjects/{end_user_id}")
def erase_subject(end_user_id: str, runtime: RuntimeDep, caller: AdminCaller) -> dict[str, Any]:
    counts = runtime.subjects.erase(caller.tenant, end_user_id)
    # Cached answers may quote the erased person: drop the tenant's caches.
    runtime.gateway.cache.invalidate_tenant(caller.tenant)
    runtime.audit.append(
        caller.tenant,
        caller.key_id,
        "subject.erase",
        subject_hash(caller.tenant, end_user_id),
        {"deleted": counts},
    )
    return {"object": "subject.erasure", "deleted": counts}


@router.post("/retention/purge")
async def purge_now(runtime: RuntimeDep, caller: AdminCaller) -> dict[str, Any]:
    counts = await asyncio.to_thread(purge, runtime.database, runtime.settings.retention)
    runtime.audit.append(caller.tenant, caller.key_id, "retention.purge", "all", {"deleted": counts})
    return {"object": "retention.purge", "deleted": counts}


@router.get("/audit")
def audit_entries(
    runtime: RuntimeDep, caller: AdminCaller, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> dict[str, Any]:
    entries = runtime.audit.entries(caller.tenant, limit)
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
def audit_verify(runtime: RuntimeDep, caller: AdminCaller) -> dict[str, Any]:
    result = runtime.audit.verify()
    return {
        "ok": result.ok,
        "entries": result.entries,
        "first_broken_seq": result.first_broken_seq,
        "problem": result.problem,
    }
