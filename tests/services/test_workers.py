"""`keel worker`s on PostgreSQL and Redis: a worker stopped mid-job (SIGTERM, as Kubernetes does) hands
the rest of its job back through Redis, and another worker finishes it, each document stored once."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from keel.config import Settings
from keel.runtime import Runtime
from tests.integration.live import KEEL
from tests.support.workers import stop_a_worker_mid_job

REDIS_URL = "redis://127.0.0.1:6379/11"


@pytest.fixture
def runtime(postgres_url: str, tmp_path: Path) -> Iterator[Runtime]:
    redis.Redis.from_url(REDIS_URL).flushdb()
    built = Runtime.build(
        Settings(database_url=postgres_url, redis_url=REDIS_URL, data_dir=tmp_path / "submitter")
    )
    built.prepare()
    yield built
    built.close()
    redis.Redis.from_url(REDIS_URL).flushdb()


def _worker(runtime: Runtime, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "KEEL_DATABASE_URL": str(runtime.settings.database_url),
        "KEEL_REDIS_URL": REDIS_URL,
        "KEEL_DATA_DIR": str(data_dir),
        "KEEL_LOG_LEVEL": "warning",
        # No stale-claim requeue during the test: only the hand-back can pass the job on.
        "KEEL_JOB_STALE_AFTER_S": "600",
    }
    return subprocess.Popen([*KEEL, "worker"], env=env)


def test_a_stopped_workers_job_is_taken_over_at_once(runtime: Runtime, tmp_path: Path) -> None:
    stop_a_worker_mid_job(runtime, "acme", lambda name: _worker(runtime, tmp_path / name))
