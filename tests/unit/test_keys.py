from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from keel.errors import AuthenticationError, InvalidRequestError, NotFoundError
from keel.governance.audit import AuditLog
from keel.keys import KEY_PREFIX, KeyStore, Role, generate_key, hash_key
from keel.store.engine import Database
from keel.store.models import ApiKey


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'keys.db'}")
    database.migrate()
    return database


def test_generated_keys_are_prefixed_and_unique() -> None:
    keys = {generate_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(key.startswith(KEY_PREFIX) and len(key) >= 45 for key in keys)


def test_hash_is_stable_and_does_not_contain_the_key() -> None:
    key = generate_key()
    assert hash_key(key) == hash_key(key)
    assert hash_key(key) != hash_key(generate_key())
    assert key not in hash_key(key)


def test_only_the_hash_is_stored(database: Database) -> None:
    issued = KeyStore(database, AuditLog(database)).create("acme", Role.APP, "web")
    with database.session() as session:
        rows = list(session.scalars(select(ApiKey)))
    assert len(rows) == 1
    stored = [str(value) for value in vars(rows[0]).values()]
    assert not any(issued.secret in value for value in stored)
    assert rows[0].key_hash == hash_key(issued.secret)
    assert rows[0].prefix == issued.secret[:12]


def test_authenticate_returns_tenant_and_role(database: Database) -> None:
    keys = KeyStore(database, AuditLog(database))
    issued = keys.create("acme", Role.REVIEWER)
    principal = keys.authenticate(issued.secret)
    assert (principal.tenant, principal.role, principal.key_id) == ("acme", Role.REVIEWER, issued.record.id)


@pytest.mark.parametrize("presented", ["", "not-a-key", "keel_" + "x" * 43, "Bearer keel_abc"])
def test_unknown_or_malformed_keys_fail(database: Database, presented: str) -> None:
    KeyStore(database, AuditLog(database)).create("acme", Role.APP)
    with pytest.raises(AuthenticationError):
        KeyStore(database, AuditLog(database)).authenticate(presented)


def test_revoked_keys_fail_and_leave_listings(database: Database) -> None:
    keys = KeyStore(database, AuditLog(database))
    issued = keys.create("acme", Role.APP)
    keys.revoke(issued.record.prefix)
    with pytest.raises(AuthenticationError):
        keys.authenticate(issued.secret)
    assert keys.list("acme") == []
    assert [key.id for key in keys.list("acme", include_revoked=True)] == [issued.record.id]


def test_revoke_unknown_key(database: Database) -> None:
    with pytest.raises(NotFoundError):
        KeyStore(database, AuditLog(database)).revoke("keel_nothere")


@pytest.mark.parametrize("tenant", ["", "Acme", "a b", "x" * 65, "-lead"])
def test_tenant_names_are_checked(database: Database, tenant: str) -> None:
    with pytest.raises(InvalidRequestError):
        KeyStore(database, AuditLog(database)).create(tenant, Role.APP)
