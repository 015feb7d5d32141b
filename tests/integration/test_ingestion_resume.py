"""A server killed with SIGKILL in the middle of an ingestion job loses nothing: after a restart the job
resumes and every document ends up stored exactly once, with exactly one index entry per chunk."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx
from sqlalchemy import func, select, text

from keel.store.engine import Database
from keel.store.models import Chunk, Document, JobItem
from tests.integration.live import create_key, free_port, start_server

DOCUMENTS = 320


def job_state(base: str, key: str, job_id: str) -> dict[str, object]:
    response = httpx.get(f"{base}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    return dict(response.json())


def test_kill_9_mid_ingestion_then_resume_exactly_once(tmp_path: Path, live_tier_env: dict[str, str]) -> None:
    # With Redis the restarted server cannot know the killed one's claims are orphaned until they go
    # stale: a short timeout keeps the test quick (the embedded tier releases them at start).
    live_tier_env = {**live_tier_env, "KEEL_JOB_STALE_AFTER_S": "4"}
    key = create_key(tmp_path, "crash", "app", live_tier_env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    documents = [
        {
            "source": f"notes/{i:04d}.txt",
            "text": f"Note {i}: part {i % 7} fits frame size {i % 5}.\n\nSecond paragraph {i}.",
        }
        for i in range(DOCUMENTS)
    ]
    server = start_server(tmp_path, port, live_tier_env)
    try:
        response = httpx.post(
            f"{base}/v1/documents",
            json={"documents": documents},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert response.status_code == 202
        job_id = response.json()["id"]
        deadline = time.monotonic() + 120
        while True:
            state = job_state(base, key, job_id)
            if int(state["done"]) > 0:  # type: ignore[call-overload]
                break
            assert time.monotonic() < deadline
            time.sleep(0.02)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert int(state["pending"]) > 0, "the job finished before the kill; the test proves nothing"  # type: ignore[call-overload]

    server = start_server(tmp_path, port, live_tier_env)
    try:
        deadline = time.monotonic() + 180
        while (state := job_state(base, key, job_id))["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, state
            time.sleep(0.2)
        failed = [i for i in state["items"] if i["status"] == "failed"]  # type: ignore[attr-defined]
        assert state["status"] == "succeeded", failed[:3]
    finally:
        server.terminate()
        server.wait(timeout=60)

    url = live_tier_env.get("KEEL_DATABASE_URL", f"sqlite:///{tmp_path / 'keel.db'}")
    database = Database(url)
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == DOCUMENTS
        chunks = session.scalar(select(func.count()).select_from(Chunk))
        assert chunks == DOCUMENTS * 1
        if database.is_sqlite:
            assert session.scalar(text("SELECT count(*) FROM chunk_fts")) == chunks
            assert session.scalar(text("SELECT count(*) FROM chunk_vectors")) == chunks
        else:
            assert session.scalar(text("SELECT count(*) FROM chunk_index")) == chunks
        statuses = session.execute(select(JobItem.status, JobItem.outcome)).all()
        assert {tuple(s) for s in statuses} == {("done", "created")}
    database.dispose()
