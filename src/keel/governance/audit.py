"""The audit log: append-only and hash-chained. Each entry's hash covers its content and the previous
entry's hash, so changing, removing or reordering any entry breaks every hash after it; `verify` finds
the first break. Entries record who did what to which object, never the personal data itself."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update

from keel.store.engine import Database
from keel.store.models import AuditEntry, AuditHead
from keel.store.records import copied

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditRecord:
    """An audit entry as the log reports it: a copy of its row."""

    seq: int
    tenant: str
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    created_at: datetime
    prev_hash: str
    hash: str

    @classmethod
    def of(cls, row: AuditEntry) -> AuditRecord:
        return copied(cls, row)


def entry_hash(
    prev_hash: str,
    seq: int,
    tenant: str,
    actor: str,
    action: str,
    target: str,
    details: dict[str, Any],
    created_at: datetime,
) -> str:
    canonical = json.dumps(
        [prev_hash, seq, tenant, actor, action, target, details, created_at.astimezone(UTC).isoformat()],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    first_broken_seq: int | None = None
    problem: str | None = None


class AuditLog:
    def __init__(self, database: Database) -> None:
        self._database = database

    def append(
        self, tenant: str, actor: str, action: str, target: str, details: dict[str, Any] | None = None
    ) -> int:
        with self._database.session() as session:
            # Taking the head row's lock first makes concurrent appends wait in line, on SQLite (the write
            # lock) and PostgreSQL (the row lock) alike, so no two entries share a predecessor.
            session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq + 1))
            head = session.get_one(AuditHead, 1, populate_existing=True)
            created_at = datetime.now(UTC).replace(microsecond=0)
            payload = details or {}
            digest = entry_hash(head.hash, head.seq, tenant, actor, action, target, payload, created_at)
            session.add(
                AuditEntry(
                    seq=head.seq,
                    tenant=tenant,
                    actor=actor,
                    action=action,
                    target=target,
                    details=payload,
                    created_at=created_at,
                    prev_hash=head.hash,
                    hash=digest,
                )
            )
            head.hash = digest
            return head.seq

    def entries(self, tenant: str | None = None, limit: int = 100) -> list[AuditRecord]:
        query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
        if tenant is not None:
            query = query.where(AuditEntry.tenant == tenant)
        with self._database.session() as session:
            return [AuditRecord.of(row) for row in session.scalars(query)]

    def verify(self) -> Verification:
        previous, expected_seq, count = GENESIS, 1, 0
        with self._database.session() as session:
            head = session.get_one(AuditHead, 1)
            for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).yield_per(1000):
                count += 1
                if entry.seq != expected_seq:
                    return Verification(False, count, entry.seq, f"entry {expected_seq} is missing")
                if entry.prev_hash != previous:
                    return Verification(False, count, entry.seq, "the link to the previous entry is broken")
                recomputed = entry_hash(
                    previous,
                    entry.seq,
                    entry.tenant,
                    entry.actor,
                    entry.action,
                    entry.target,
                    entry.details,
                    entry.created_at,
                )
                if recomputed != entry.hash:
                    return Verification(False, count, entry.seq, "the entry was changed after it was written")
                previous, expected_seq = entry.hash, expected_seq + 1
            if head.hash != previous or head.seq != expected_seq - 1:
                return Verification(False, count, expected_seq, "entries at the end were removed")
        return Verification(True, count)
