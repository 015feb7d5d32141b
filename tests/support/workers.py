"""A `keel worker` stopped mid-job, as a rolling restart does it: the scenario both tiers run."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable

from sqlalchemy import func, select

from keel.jobs.ingestion_jobs import NewDocument
from keel.runtime import Runtime
from keel.store.models import Document

DOCUMENTS = 160


def wait_for(condition: Callable[[], bool], limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def stop_a_worker_mid_job(
    runtime: Runtime, tenant: str, start_worker: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    """Submits a job, stops the worker running it with SIGTERM after its first stored document, checks
    that the rest was handed back unclaimed, lets a second worker (stopped with Ctrl-C) finish it, and
    checks every document was stored exactly once."""
    documents = [
        NewDocument(source=f"note-{i}.txt", data=f"Note {i}: the chain needs oil every {i} km.".encode())
        for i in range(DOCUMENTS)
    ]
    job = runtime.jobs.submit(tenant, documents)

    def items() -> Counter[str]:
        return Counter(item.status for item in runtime.jobs.get(tenant, job.id).items)

    first = start_worker("first")
    try:
        wait_for(lambda: items()["done"] > 0, 180, "the first stored document")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0, "drained and exited cleanly"
    finally:
        if first.poll() is None:
            first.kill()
    left = items()
    assert "processing" not in left, "the batch in hand was finished, none left claimed"
    assert left["pending"] > 0, "a stopping worker started no new batch"
    assert runtime.jobs.get(tenant, job.id).status == "queued"

    second = start_worker("second")
    try:
        wait_for(lambda: runtime.jobs.get(tenant, job.id).status not in ("queued", "running"), 180, "the job")
    finally:
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=60) == 0
    finished = runtime.jobs.get(tenant, job.id)
    assert finished.status == "succeeded"
    assert {(i.status, i.outcome) for i in finished.items} == {("done", "created")}
    with runtime.database.session() as session:
        stored = session.scalar(select(func.count()).select_from(Document).where(Document.tenant == tenant))
    assert stored == DOCUMENTS, "every document stored exactly once"
