"""The real app with the real local models and a real SQLite database, shared by the tests of a session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from keel.config import Settings
from keel.keys import Role
from keel.runtime import Runtime
from keel.server.app import create_app


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


@pytest.fixture(scope="session")
def tier_settings() -> Iterator[dict[str, str]]:
    if TIER != "scaleout":
        yield {}
        return
    import redis

    from tests.services.pg import start_postgres

    server = start_postgres()
    database = server.create_database()
    redis.Redis.from_url(REDIS_URL).flushdb()
    try:
        yield {"database_url": server.url(database), "redis_url": REDIS_URL}
    finally:
        server.drop_database(database)
        server.stop()
        redis.Redis.from_url(REDIS_URL).flushdb()


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
