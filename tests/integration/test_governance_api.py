"""Governance over HTTP: the hash-chained audit log, admin key management, GDPR export and erasure,
and retention purges."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from keel.config import RetentionSettings
from keel.demo.loader import load_demo
from keel.governance.audit import AuditLog
from keel.governance.retention import purge
from keel.keys import Role
from keel.runtime import Runtime
from keel.store.engine import Database
from keel.store.models import AuditEntry, Conversation, SpanRecord
from tests.integration.live import KEEL, keel_env


def test_admin_actions_are_audited_and_the_chain_verifies(client: TestClient, runtime: Runtime) -> None:
    admin = {"Authorization": f"Bearer {runtime.keys.create('gov', Role.ADMIN).secret}"}
    created = client.post("/v1/admin/keys", headers=admin, json={"role": "reviewer", "name": "sam"})
    assert created.status_code == 201 and created.json()["secret"].startswith("keel_")
    key_id = created.json()["id"]
    listed = client.get("/v1/admin/keys", headers=admin).json()["data"]
    assert key_id in [k["id"] for k in listed] and all("secret" not in k for k in listed)
    assert client.delete(f"/v1/admin/keys/{key_id}", headers=admin).status_code == 204
    other_tenant_key = runtime.keys.create("elsewhere", Role.APP).record.id
    assert client.delete(f"/v1/admin/keys/{other_tenant_key}", headers=admin).status_code == 404
    actions = [e["action"] for e in client.get("/v1/admin/audit", headers=admin).json()["data"]]
    assert actions[:2] == ["key.revoke", "key.create"]
    assert client.get("/v1/admin/audit/verify", headers=admin).json()["ok"] is True


def test_tampering_is_detected(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'keel.db'}")
    database.migrate()
    audit = AuditLog(database)
    for i in range(5):
        audit.append("acme", "key_1", "document.delete", f"doc_{i}")
    assert audit.verify().ok
    verify = [*KEEL, "audit", "verify"]
    assert subprocess.run(verify, env=keel_env(tmp_path), capture_output=True).returncode == 0
    with database.session() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(target="doc_innocent"))
    result = audit.verify()
    assert (result.ok, result.first_broken_seq) == (False, 3)
    broken = subprocess.run(verify, env=keel_env(tmp_path), capture_output=True, text=True)
    assert broken.returncode == 1 and "entry 3" in broken.stderr
    with database.session() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(target="doc_2"))
        session.execute(text("DELETE FROM audit_log WHERE seq = 5"))
    assert audit.verify().problem == "entries at the end were removed"


def test_a_subject_is_exported_then_erased_everywhere(client: TestClient, runtime: Runtime) -> None:
    load_demo(runtime.database, runtime.ingestion, tenant="gdpr")
    admin = {"Authorization": f"Bearer {runtime.keys.create('gdpr', Role.ADMIN).secret}"}
    app = {"Authorization": f"Bearer {runtime.keys.create('gdpr', Role.APP).secret}"}
    reply = client.post(
        "/v1/support/replies",
        headers=app,
        json={"message": "Where is my order LC-50877?", "customer_id": "C-1002"},
    ).json()
    assert (
        client.post(
            "/v1/feedback", headers=app, json={"trace_id": reply["trace_id"], "score": "up"}
        ).status_code
        == 201
    )
    runtime.tracing.flush()
    exported = client.get("/v1/admin/subjects/C-1002/export", headers=admin).json()
    assert exported["customer"]["email"] == "jonas.weber@example.com"
    assert {o["external_id"] for o in exported["orders"]} == {"LC-50877", "LC-50902"}
    assert next(t["text"] for t in exported["turns"]) == "Where is my order LC-50877?"
    assert exported["feedback"] and exported["traces"] and exported["replies"]

    erased = client.delete("/v1/admin/subjects/C-1002", headers=admin).json()["deleted"]
    assert erased["customer"] == 1 and erased["conversations"] >= 1 and erased["traces"] >= 1
    after = client.get("/v1/admin/subjects/C-1002/export", headers=admin).json()
    assert after["customer"] is None and not any(
        after[k] for k in ("orders", "turns", "replies", "feedback", "traces")
    )
    with runtime.database.session() as session:
        assert (
            session.scalars(select(SpanRecord).where(SpanRecord.trace_id == reply["trace_id"])).first()
            is None
        )
        erasure = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "subject.erase", AuditEntry.tenant == "gdpr")
        ).one()
    assert "C-1002" not in json.dumps([erasure.target, erasure.details])
    assert client.get(f"/v1/support/replies/{reply['id']}", headers=app).status_code == 404


def test_retention_purges_only_what_is_old(runtime: Runtime, client: TestClient) -> None:
    old = datetime.now(UTC) - timedelta(days=400)
    with runtime.database.session() as session:
        session.add(Conversation(tenant="retention", created_at=old))
        session.add(
            SpanRecord(
                span_id="0" * 15 + "1",
                trace_id="f" * 32,
                name="old",
                start_time=old,
                duration_ms=1,
                status="ok",
                attributes={},
            )
        )
    counts = purge(runtime.database, RetentionSettings(traces_days=30, conversations_days=180))
    assert counts["traces"] >= 1 and counts["conversations"] >= 1
    with runtime.database.session() as session:
        assert session.scalars(select(Conversation).where(Conversation.tenant == "retention")).first() is None
        assert session.scalars(select(SpanRecord)).first() is not None, "recent traces stay"


def test_each_admin_action_is_audited_once(client: TestClient, runtime: Runtime) -> None:
    admin = {"Authorization": f"Bearer {runtime.keys.create('gov-once', Role.ADMIN).secret}"}

    def newest_actions() -> list[str]:
        entries = client.get("/v1/admin/audit?limit=1000", headers=admin).json()["data"]
        return [e["action"] for e in entries]

    assert client.post("/v1/admin/retention/purge", headers=admin).status_code == 200
    assert newest_actions().count("retention.purge") == 1
    assert client.get("/v1/admin/subjects/C-404/export", headers=admin).status_code == 200
    assert client.delete("/v1/admin/subjects/C-404", headers=admin).status_code == 200
    actions = newest_actions()
    assert actions[:2] == ["subject.erase", "subject.export"]
    assert (actions.count("subject.export"), actions.count("subject.erase")) == (1, 1)
