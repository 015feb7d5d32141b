"""What screening chunks for indirect injection at ingestion costs the ingestion, and what it saves a reply.

    .venv/bin/python -m bench.ingestion_screening [--data ../shared/data/scifact] [--docs 300]
        [--passages 40]

Ingestion: the same SciFact abstracts (a fixed random sample, one plain-text document each) through
Keel's own ingestion in batches of 16 (the ingestion jobs' batch), with `guard.injection_sources_at_ingestion`
off, then on, each runtime in a fresh data directory (nothing cached between them). Request time: a
sample of the ingested chunks, one per call, through the copilot's screening (`InboundGuard.
ascreen_passages`) by a guard with nothing in memory, as a fresh replica has: reading the stored
verdicts, and screening cold (no store); both again while a second bulk ingestion runs beside them.
The load average is recorded beside every timing: on a shared two-core machine they are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.harness import percentile, write_results
from bench.retrieval_scifact import corpus_requests, load_corpus
from keel.config import GuardSettings, Settings
from keel.guard.inbound import InboundGuard
from keel.guard.injection import InjectionDetector
from keel.guard.verdict_store import PassageVerdictStore
from keel.knowledge.ingestion import IngestRequest
from keel.runtime import Runtime
from keel.store.models import Chunk, PassageVerdictRow

BATCH = 16
# Documents of the bulk ingestion that runs beside the second round of request-time timings.
BACKGROUND = 120


def load() -> float:
    return round(os.getloadavg()[0], 2)


def build(data_dir: Path, at_ingestion: bool, warm: list[IngestRequest]) -> Runtime:
    """A runtime with both embedding lanes and the guard warm: `warm` (other documents, another tenant)
    ingested before anything is timed."""
    runtime = Runtime.build(
        Settings(data_dir=data_dir, guard=GuardSettings(injection_sources_at_ingestion=at_ingestion))
    )
    runtime.prepare()
    runtime.embedding_model.warm_up()
    runtime.guard.injection.warm_up()
    runtime.ingestion.ingest_batch([replace(r, tenant="warm-up") for r in warm])
    return runtime


def ingest(runtime: Runtime, requests: list[IngestRequest]) -> dict[str, Any]:
    before = load()
    started = time.perf_counter()
    for start in range(0, len(requests), BATCH):
        for result in runtime.ingestion.ingest_batch(requests[start : start + BATCH]):
            assert not isinstance(result, Exception), result
    seconds = time.perf_counter() - started
    tenant = requests[0].tenant
    with runtime.database.reading() as session:
        chunks = session.scalar(select(func.count()).select_from(Chunk).where(Chunk.tenant == tenant)) or 0
        texts = select(Chunk.content_hash).where(Chunk.tenant == tenant)
        verdicts = (
            session.scalar(
                select(func.count())
                .select_from(PassageVerdictRow)
                .where(PassageVerdictRow.text_hash.in_(texts))
            )
            or 0
        )
    return {
        "docs": len(requests),
        "chunks": chunks,
        "verdicts_stored": verdicts,
        "seconds": round(seconds, 2),
        "docs_per_s": round(len(requests) / seconds, 2),
        "load_before": before,
        "load_after": load(),
    }


def guard_of(runtime: Runtime, stored: bool) -> InboundGuard:
    """The runtime's guard as a fresh process builds it: the same model and settings, nothing in memory."""
    detector = InjectionDetector(
        runtime.embedding_model,
        cache_dir=runtime.settings.data_dir / "models",
        settings=runtime.guard.injection.settings,
        stored=PassageVerdictStore(runtime.database) if stored else None,
    )
    detector.warm_up()
    return InboundGuard(runtime.guard.settings, detector, runtime.guard.pii)


async def _timed(guard: InboundGuard, passages: list[str], warm: str) -> list[float]:
    await guard.ascreen_passages([warm])  # the first call opens the store's connection
    times = []
    for passage in passages:
        started = time.perf_counter()
        await guard.ascreen_passages([passage])
        times.append((time.perf_counter() - started) * 1000)
    return times


def timed(runtime: Runtime, passages: list[str], warm: str) -> dict[str, Any]:
    rows = {}
    for name, stored in (("stored verdict (screened at ingestion)", True), ("cold (screened now)", False)):
        before = load()
        times = asyncio.run(_timed(guard_of(runtime, stored), passages, warm))
        rows[name] = {
            "n": len(times),
            "p50_ms": round(percentile(times, 50), 2),
            "p95_ms": round(percentile(times, 95), 2),
            "max_ms": round(max(times), 2),
            "load_before": before,
            "load_after": load(),
        }
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--passages", type=int, default=40)
    args = parser.parse_args()
    corpus = load_corpus(args.data)
    sample = random.Random(17).sample(corpus, args.docs + BACKGROUND + BATCH)
    requests, background = corpus_requests(sample[: args.docs]), corpus_requests(sample[args.docs : -BATCH])
    warm = corpus_requests(sample[-BATCH:])
    ingestion: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as off_dir, tempfile.TemporaryDirectory() as on_dir:
        off = build(Path(off_dir), False, warm)
        ingestion["without screening"] = ingest(off, requests)
        off.close()
        on = build(Path(on_dir), True, warm)
        ingestion["with screening"] = ingest(on, requests)
        with on.database.reading() as session:
            chunks = list(
                session.scalars(select(Chunk.text).where(Chunk.tenant == "scifact").order_by(Chunk.id))
            )
        picked = random.Random(5).sample(chunks, min(args.passages + 1, len(chunks)))
        passages, first = picked[1:], picked[0]
        request_time = {"no ingestion running": timed(on, passages, first)}
        # Beside a bulk ingestion of other documents (another tenant), which screens on the bulk lane.
        others = [replace(r, tenant="other") for r in background]
        worker = threading.Thread(target=ingest, args=(on, others))
        worker.start()
        time.sleep(2.0)  # the ingestion is embedding and screening by now
        request_time["beside a bulk ingestion"] = timed(on, passages, first)
        worker.join()
        on.close()
    off_rate, on_rate = (
        ingestion["without screening"]["docs_per_s"],
        ingestion["with screening"]["docs_per_s"],
    )
    data = {
        "corpus": "BEIR SciFact abstracts, a fixed random sample (seed 17)",
        "ingestion": ingestion,
        "ingestion_time_factor": round(off_rate / on_rate, 2),
        "request_time": request_time,
        "cpus": len(os.sched_getaffinity(0)),
    }
    write_results("ingestion_screening", data, markdown(data))


def markdown(data: dict[str, Any]) -> str:
    lines = [
        f"Corpus: {data['corpus']}, on {data['cpus']} CPUs (a shared machine: timings are noisy).",
        "",
        "## Ingestion (batches of 16 documents)",
        "",
        "| injection screening | docs | chunks | verdicts stored | seconds | docs/s | load 1 min before / after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in data["ingestion"].items():
        lines.append(
            f"| {name} | {row['docs']} | {row['chunks']} | {row['verdicts_stored']} | {row['seconds']} "
            f"| {row['docs_per_s']} | {row['load_before']} / {row['load_after']} |"
        )
    lines += [
        "",
        f"Ingestion with screening takes {data['ingestion_time_factor']}x the time without.",
        "",
        "## A reply's passage screening (one ingested chunk per call, nothing in memory)",
        "",
        "| when | verdict | n | p50 ms | p95 ms | max ms | load 1 min before / after |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for when, rows in data["request_time"].items():
        for name, row in rows.items():
            lines.append(
                f"| {when} | {name} | {row['n']} | {row['p50_ms']} | {row['p95_ms']} | {row['max_ms']} "
                f"| {row['load_before']} / {row['load_after']} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
