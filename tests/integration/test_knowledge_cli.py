"""`keel ingest`, `keel search` and `keel worker` as a user runs them, on a fresh data directory."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import httpx

from keel.config import Settings
from keel.jobs.ingestion_jobs import NewDocument
from keel.runtime import Runtime
from keel.store.models import Job
from tests.integration.live import KEEL, create_key, free_port, keel_env, start_server
from tests.support.workers import stop_a_worker_mid_job, wait_for


def keel(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*KEEL, *args],
        env={**keel_env(data_dir), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_ingest_folder_then_search(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "tyres.md").write_text("# Tyres\n\n## Pressure\n\nPump the tyres to 3.5 bar every two weeks.\n")
    (docs / "sub" / "lights.txt").write_text("The lights switch on automatically at dusk.\n")
    (docs / "sub" / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    (docs / ".hidden.txt").write_text("never ingested")
    data_dir = tmp_path / "data"

    first = keel(data_dir, "ingest", str(docs), "--tenant", "shop")
    assert first.returncode == 1, "a partial job is a failure for scripts"
    assert "partial" in first.stdout and "created=2" in first.stdout and "failed=1" in first.stdout
    assert "broken.pdf" in first.stderr

    again = keel(data_dir, "ingest", str(docs / "tyres.md"), "--tenant", "shop")
    assert again.returncode == 0, again.stderr
    assert "unchanged=1" in again.stdout

    found = keel(data_dir, "search", "how much air pressure for tyres", "--tenant", "shop", "-k", "2")
    assert found.returncode == 0, found.stderr
    assert "tyres.md" in found.stdout.splitlines()[3]
    assert "Tyres > Pressure" in found.stdout

    nothing = keel(data_dir, "ingest", str(docs / "sub" / "broken.pdf"), "--tenant", "shop")
    assert nothing.returncode == 1


def test_worker_consumes_queued_jobs(tmp_path: Path) -> None:
    runtime = Runtime.build(Settings(data_dir=tmp_path))
    runtime.prepare()
    job = runtime.jobs.submit("shop", [NewDocument(source="bell.txt", data=b"Every bike has a bell.")])
    worker = subprocess.Popen([*KEEL, "worker"], env=keel_env(tmp_path))
    try:
        deadline = time.monotonic() + 120
        while runtime.jobs.get("shop", job.id).status in ("queued", "running"):
            assert time.monotonic() < deadline
            assert worker.poll() is None, "keel worker exited"
            time.sleep(0.2)
        assert runtime.jobs.get("shop", job.id).status == "succeeded"
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        runtime.close()


def _unqueued_job(tmp_path: Path, documents: int) -> tuple[Runtime, Job, list[str]]:
    """A runtime on a fresh data dir with a job of `documents` notes for tenant "shop", not queued, and
    its item ids in order."""
    from sqlalchemy import select

    from keel.store.models import JobItem

    runtime = Runtime.build(Settings(data_dir=tmp_path))
    runtime.prepare()
    notes = [NewDocument(source=f"n{i}.txt", data=f"Note number {i}.".encode()) for i in range(documents)]
    job = runtime.jobs.submit("shop", notes, enqueue=False)
    with runtime.database.session() as session:
        item_ids = list(
            session.scalars(select(JobItem.id).where(JobItem.job_id == job.id).order_by(JobItem.ordinal))
        )
    return runtime, job, item_ids


def test_a_dead_workers_job_is_finished_by_another(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import func, select, update

    from keel.store.models import Document, Job, JobItem

    runtime, job, item_ids = _unqueued_job(tmp_path, 6)
    first_two = item_ids[:2]
    # A worker claimed two items, then died: no heartbeat since.
    assert runtime.jobs._claim(job.id, first_two) == first_two
    long_ago = datetime.now(UTC) - timedelta(minutes=10)
    with runtime.database.session() as session:
        session.execute(update(JobItem).where(JobItem.id.in_(first_two)).values(claimed_at=long_ago))
        session.execute(update(Job).where(Job.id == job.id).values(status="running", updated_at=long_ago))
    assert runtime.jobs.requeue_stale(60) == [job.id]
    assert runtime.jobs.requeue_stale(60) == [], "requeued once, however many workers notice"
    worker = subprocess.Popen([*KEEL, "worker"], env=keel_env(tmp_path))
    try:
        deadline = time.monotonic() + 120
        while runtime.jobs.get("shop", job.id).status in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    finished = runtime.jobs.get("shop", job.id)
    assert finished.status == "succeeded"
    assert {(i.status, i.outcome) for i in finished.items} == {("done", "created")}
    with runtime.database.session() as session:
        assert (
            session.scalar(select(func.count()).select_from(Document).where(Document.tenant == "shop")) == 6
        )
    runtime.close()


def test_a_worker_stopped_mid_job_hands_the_rest_back(tmp_path: Path) -> None:
    runtime = Runtime.build(Settings(data_dir=tmp_path))
    runtime.prepare()
    stop_a_worker_mid_job(
        runtime, "shop", lambda _: subprocess.Popen([*KEEL, "worker"], env=keel_env(tmp_path))
    )
    runtime.close()


def test_claims_of_an_interrupted_batch_go_back_to_the_queue(tmp_path: Path) -> None:
    runtime, job, ids = _unqueued_job(tmp_path, 4)
    # Two threads of one process on the same job (its message delivered twice), one batch each.
    other_thread = threading.Thread(
        target=runtime.jobs._set_in_flight, args=(job.id, runtime.jobs._claim(job.id, ids[2:]))
    )
    other_thread.start()
    other_thread.join()
    runtime.jobs._set_in_flight(job.id, runtime.jobs._claim(job.id, ids[:2]))
    with runtime.database.session() as session:
        session.get_one(Job, job.id).status = "running"

    assert runtime.jobs.release_in_flight() == [job.id]
    released = runtime.jobs.get("shop", job.id)
    assert released.status == "queued"
    assert {item.status for item in released.items} == {"pending"}
    assert runtime.jobs.release_in_flight() == [], "released once"
    runtime.close()


def test_a_server_without_its_consumer_leaves_jobs_to_workers(tmp_path: Path) -> None:
    port = free_port()
    key = create_key(tmp_path, "shop", "app")
    server = start_server(tmp_path, port, {"KEEL_SERVE_JOBS": "false"})
    worker = None
    try:
        reply = httpx.post(
            f"http://127.0.0.1:{port}/v1/documents",
            json={"documents": [{"source": "bell.txt", "text": "Every bike has a bell."}]},
            headers={"authorization": f"Bearer {key}"},
            timeout=60,
        )
        assert reply.status_code == 202, reply.text

        def status() -> str:
            job = httpx.get(
                f"http://127.0.0.1:{port}/v1/jobs/{reply.json()['id']}",
                headers={"authorization": f"Bearer {key}"},
                timeout=60,
            )
            return str(job.json()["status"])

        time.sleep(3)
        assert status() == "queued", "the server consumed a job with serve_jobs off"
        worker = subprocess.Popen([*KEEL, "worker"], env=keel_env(tmp_path))
        wait_for(lambda: status() == "succeeded", 120, "the worker to run the job")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(timeout=60)
        server.terminate()
        server.wait(timeout=60)
