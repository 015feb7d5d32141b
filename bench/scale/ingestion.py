"""3. Ingestion through `POST /v1/documents` with 0, 1 and 2 `keel worker`s beside the replicas'
own consumers."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.scale.fleet import Fleet, Proc, cpu_seconds, load_average
from bench.scale.plan import ROOT, Plan

# -- 3. ingestion ---------------------------------------------------------------------------------------


def demo_vocabulary() -> list[str]:
    """English words from the demo company's help articles: real words tokenise like real text does."""
    words: dict[str, None] = {}
    for article in sorted((ROOT / "src/keel/demo/data/articles").glob("*.md")):
        for word in re.findall(r"[a-z]{3,}", article.read_text().lower()):
            words[word] = None
    return list(words)


VOCABULARY = demo_vocabulary()


def make_documents(run: str, count: int, seed: int) -> list[dict[str, Any]]:
    """Small plain-text documents (2-3 paragraphs of 25-45 words: one chunk each, ~600 characters),
    new text for every seed, so that the embedding cache (keyed by text) never helps."""
    rng = np.random.default_rng(seed)
    documents = []
    for i in range(count):
        paragraphs = [
            " ".join(VOCABULARY[w] for w in rng.integers(0, len(VOCABULARY), int(rng.integers(25, 46))))
            for _ in range(int(rng.integers(2, 4)))
        ]
        documents.append(
            {"source": f"{run}/doc-{i:04d}", "text": f"{run} document {i}.\n\n" + "\n\n".join(paragraphs)}
        )
    return documents


def count_rows(url: str, table: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def run_jobs(replicas: list[Proc], key: str, documents: list[dict[str, Any]], jobs: int) -> dict[str, Any]:
    """Uploads the documents as `jobs` jobs (alternating replicas), waits until every job finished."""
    headers = {"authorization": f"Bearer {key}"}
    per_job = -(-len(documents) // jobs)
    started = time.perf_counter()
    job_ids: list[tuple[str, Proc]] = []
    with httpx.Client(headers=headers, timeout=120) as client:
        for j in range(jobs):
            batch = documents[j * per_job : (j + 1) * per_job]
            if not batch:
                continue
            replica = replicas[j % len(replicas)]
            reply = client.post(f"http://127.0.0.1:{replica.port}/v1/documents", json={"documents": batch})
            if reply.status_code != 202:
                raise RuntimeError(f"upload: {reply.status_code} {reply.text[:500]}")
            job_ids.append((reply.json()["id"], replica))
        uploaded_s = time.perf_counter() - started
        finished: dict[str, dict[str, Any]] = {}
        while len(finished) < len(job_ids):
            for job_id, replica in job_ids:
                if job_id in finished:
                    continue
                view = client.get(f"http://127.0.0.1:{replica.port}/v1/jobs/{job_id}").json()
                if view["status"] not in ("queued", "running"):
                    finished[job_id] = {
                        "status": view["status"],
                        "done": view["done"],
                        "failed": view["failed"],
                        "at_s": time.perf_counter() - started,
                    }
            if time.perf_counter() - started > 1800:
                raise RuntimeError(f"ingestion jobs did not finish within 30 minutes: {finished}")
            time.sleep(0.25)
    return {"wall_s": time.perf_counter() - started, "upload_s": uploaded_s, "jobs": list(finished.values())}


def ingestion_phase(
    fleet: Fleet, replicas: list[Proc], pg_pid: int, key: str, database_url: str, plan: Plan
) -> tuple[dict[str, Any], list[Proc]]:
    runs: list[dict[str, Any]] = []
    workers: list[Proc] = []
    for worker_count in (0, 1, 2):
        warm_up: dict[str, Any] = {}
        if worker_count > len(workers):
            worker = fleet.start(f"worker-{worker_count}", ["worker"])
            workers.append(worker)
            # The worker loads the embedding model on its first job: let it take warm-up jobs (any
            # consumer may take each one) until it has used a few CPU seconds, or give up after 4 tries.
            time.sleep(5)
            idle_cpu = cpu_seconds(worker.pid)
            for attempt in range(1, 5):
                consumers = len(replicas) + len(workers)
                run_jobs(
                    replicas,
                    key,
                    make_documents(f"warm-{worker_count}-{attempt}", 2 * consumers, 7 + attempt),
                    2 * consumers,
                )
                used = cpu_seconds(worker.pid) - idle_cpu
                warm_up = {"attempts": attempt, "worker_cpu_s": used}
                if used > 3.0:
                    break
            if worker.process.poll() is not None:
                raise RuntimeError(f"{worker.name} exited: {worker.log_tail()}")
        processes = replicas + workers
        chunks_before = count_rows(database_url, "chunks")
        cpu_before = {p.name: cpu_seconds(p.pid) for p in processes}
        cpu_before["postgres"] = cpu_seconds(pg_pid)
        documents = make_documents(f"ingest-w{worker_count}", plan.ingest_documents, 100 + worker_count)
        print(f"   ingestion with {worker_count} worker(s): {len(documents)} documents", flush=True)
        result = run_jobs(replicas, key, documents, plan.ingest_jobs)
        cpu = {p.name: cpu_seconds(p.pid) - cpu_before[p.name] for p in processes}
        cpu["postgres"] = cpu_seconds(pg_pid) - cpu_before["postgres"]
        chunks = count_rows(database_url, "chunks") - chunks_before
        done = sum(job["done"] for job in result["jobs"])
        runs.append(
            {
                "workers": worker_count,
                "consumers": len(replicas) + worker_count,
                "documents": len(documents),
                "documents_done": done,
                "documents_failed": sum(job["failed"] for job in result["jobs"]),
                "chunks": chunks,
                "documents_per_s": done / result["wall_s"],
                "chunks_per_s": chunks / result["wall_s"],
                "cpu_s_by_process": cpu,
                "warm_up": warm_up,
                "load_average_after": load_average(),
                **result,
            }
        )
        print(f"   -> {done / result['wall_s']:.1f} documents/s, CPU by process {cpu}", flush=True)
    return {"documents": plan.ingest_documents, "jobs": plan.ingest_jobs, "runs": runs}, workers
