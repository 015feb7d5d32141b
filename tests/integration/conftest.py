"""The real app with the real local models and a real SQLite database, shared by the tests of a session."""

from __future__ import annotations

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


@pytest.fixture(scope="session")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    data_dir: Path = tmp_path_factory.mktemp("keel-data")
    runtime = Runtime.build(Settings(data_dir=data_dir, _env_file=None))  # type: ignore[call-arg]
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
