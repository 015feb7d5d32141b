"""API keys and roles: issue a key once, keep only its hash, resolve a presented key to a caller."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from cachetools import TTLCache
from sqlalchemy import select

from keel.errors import AuthenticationError, InvalidRequestError, NotFoundError
from keel.governance.audit import AuditLog
from keel.store.engine import Database
from keel.store.models import ApiKey
from keel.store.records import copied

KEY_PREFIX = "keel_"
# Shown in listings and logs so a key can be recognised without revealing it.
DISPLAY_PREFIX_LENGTH = 12
_TENANT_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class Role(StrEnum):
    ADMIN = "admin"
    APP = "app"
    REVIEWER = "reviewer"
    VIEWER = "viewer"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    key_id: str
    key_prefix: str
    tenant: str
    role: Role


@dataclass(frozen=True)
class KeyRecord:
    """An API key as the store reports it: a copy of its row without the hash."""

    id: str
    prefix: str
    tenant: str
    role: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, row: ApiKey) -> KeyRecord:
        return copied(cls, row)


@dataclass(frozen=True)
class IssuedKey:
    """A freshly created key; `secret` exists only here and is never stored."""

    secret: str
    record: KeyRecord


def hash_key(secret: str) -> str:
    # Keys are 256-bit random tokens, so a fast hash is as safe as a slow one and keeps auth cheap.
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def validate_tenant(tenant: str) -> str:
    if not _TENANT_PATTERN.match(tenant):
        raise InvalidRequestError(
            "A tenant is 1-64 characters of lowercase letters, digits, '-' and '_', "
            "starting with a letter or digit.",
            param="tenant",
        )
    return tenant


# A verified key is remembered this long, so a busy client costs one database read per window, not per
# request; a revocation reaches this process at once and other replicas within the window.
AUTH_CACHE_SECONDS = 5.0


class KeyStore:
    """Creates, lists, revokes and authenticates API keys; every creation and revocation is audited here,
    whoever asked (an admin route, the CLI)."""

    def __init__(self, database: Database, audit: AuditLog) -> None:
        self._database = database
        self._audit = audit
        self._verified: TTLCache[str, Principal] = TTLCache(maxsize=10_000, ttl=AUTH_CACHE_SECONDS)
        self._lock = threading.Lock()

    def create(self, tenant: str, role: Role, name: str = "", *, actor: str = "system") -> IssuedKey:
        """`actor`: who asked, for the audit log (a key id, "cli"; "system" for Keel's own set-up)."""
        secret = generate_key()
        record = ApiKey(
            prefix=secret[:DISPLAY_PREFIX_LENGTH],
            key_hash=hash_key(secret),
            tenant=validate_tenant(tenant),
            role=role.value,
            name=name,
        )
        with self._database.session() as session:
            session.add(record)
            session.flush()
            created = KeyRecord.of(record)
        self._audit.append(created.tenant, actor, "key.create", created.id, {"role": created.role})
        return IssuedKey(secret=secret, record=created)

    def list(self, tenant: str | None = None, *, include_revoked: bool = False) -> list[KeyRecord]:
        query = select(ApiKey).order_by(ApiKey.created_at)
        if tenant is not None:
            query = query.where(ApiKey.tenant == tenant)
        if not include_revoked:
            query = query.where(ApiKey.revoked_at.is_(None))
        with self._database.reading() as session:
            return [KeyRecord.of(row) for row in session.scalars(query)]

    def revoke(self, key_id_or_prefix: str, *, actor: str = "system") -> KeyRecord:
        with self._database.session() as session:
            matches = list(
                session.scalars(
                    select(ApiKey).where(
                        (ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix)
                    )
                )
            )
            if not matches:
                raise NotFoundError(f"No API key with id or prefix '{key_id_or_prefix}'.")
            if len(matches) > 1:
                raise InvalidRequestError("That prefix matches several keys; revoke by id.")
            row = matches[0]
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
            revoked = KeyRecord.of(row)
        with self._lock:
            self._verified.clear()
        self._audit.append(revoked.tenant, actor, "key.revoke", revoked.id)
        return revoked

    def principal(self, key_id: str) -> Principal | None:
        """The caller behind a key id (a dashboard session), or None once the key is revoked."""
        with self._database.reading() as session:
            record = session.get(ApiKey, key_id)
            if record is None or record.revoked_at is not None:
                return None
            return Principal(
                key_id=record.id, key_prefix=record.prefix, tenant=record.tenant, role=Role(record.role)
            )

    def verified(self, secret: str) -> Principal | None:
        """The key's principal when it was verified before (and not revoked since), else None."""
        if not secret.startswith(KEY_PREFIX):
            return None
        with self._lock:
            return self._verified.get(hash_key(secret))

    def authenticate(self, secret: str) -> Principal:
        if not secret.startswith(KEY_PREFIX):
            raise AuthenticationError("Invalid API key.", code="invalid_api_key")
        digest = hash_key(secret)
        with self._lock:
            cached = self._verified.get(digest)
        if cached is not None:
            return cached
        with self._database.reading() as session:
            record = session.scalar(select(ApiKey).where(ApiKey.key_hash == digest))
            if (
                record is None
                or not hmac.compare_digest(record.key_hash, digest)
                or record.revoked_at is not None
            ):
                raise AuthenticationError("Invalid API key.", code="invalid_api_key")
            principal = Principal(
                key_id=record.id, key_prefix=record.prefix, tenant=record.tenant, role=Role(record.role)
            )
        with self._lock:
            self._verified[digest] = principal
        return principal
