"""Keel's evaluation loop, measured: dataset import, runs with confidence intervals, the release gate.

    .venv/bin/python -m bench.eval_loop [--mtrag-limit N] [--trials 3] [--skip-mtrag] [--skip-scifact]
        [--data-dir DIR] [--results NAME]

`--data-dir` keeps the database between invocations: a knowledge base already ingested there is used
as it is (ingestion is most of the time on 2 cores), so an interrupted bench can be run again cheaply.
`--results` names the files in bench/results/ (default `eval_loop`; the full MTRAG run alone is
`--skip-scifact --mtrag-limit 0 --results eval_loop_mtrag_full`, limit 0 meaning all tasks).

1. MTRAG (`govt`, bench/copilot_mtrag.py's passages and tasks): the tasks are written as a JSONL dataset
   file (conversation, gold answer, the reference passages' sources, answerability), imported, and the
   copilot target is run over the first `--mtrag-limit` tasks with `--trials` trials; the metric table
   with 95 % intervals and each trial's value is reported, and the run's HTML report written.
2. SciFact retrieval-only: the 300 test queries as a dataset (expected sources: the relevant passages),
   run through the retrieval target under bench/retrieval_scifact.py's settings (hybrid, RRF, 200
   candidates, 100 results); its nDCG@10 is checked against that bench's own computation on the same
   index. Then the gate: the same configuration run again (must pass against the first) and a
   deliberately worse one, `[knowledge.retrieval] candidates = 1` with `[evals] retrieval_k = 1` (must
   fail).

Everything runs in one process through the same services `keel eval` calls (`parse`, `EvalDatasets`,
`EvalRuns.create` + `execute`, `compare_runs`, `gate`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench import retrieval_scifact as scifact
from bench.copilot_mtrag import COMPANY, load_tasks, source_for
from bench.copilot_mtrag import TENANT as MTRAG_TENANT
from bench.copilot_mtrag import ingest as ingest_mtrag
from bench.harness import RESULTS, write_results
from keel.config import ChunkingSettings, KnowledgeSettings, Settings
from keel.evals.formats import parse
from keel.evals.gate import gate, parse_allowance
from keel.evals.run_types import RunRecord, RunRequest
from keel.evals.service import compare_runs
from keel.runtime import Runtime
from keel.server.ui.eval_reports import run_report
from keel.store.models import Document

GATE = ["ndcg@10=0.02", "recall@10=0.02", "mrr=0.02"]
SCIFACT_CONFIG = {
    "knowledge": {"retrieval": {"fusion": "rrf", "candidates": 200}},
    "evals": {"retrieval_k": 100},
}
WORSE = {"knowledge": {"retrieval": {"fusion": "rrf", "candidates": 1}}, "evals": {"retrieval_k": 1}}


def mtrag_file(path: Path, limit: int | None, out: Path) -> tuple[int, dict[str, tuple[str, str]]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    tasks, passages = load_tasks(path)
    lines = []
    for row, task in list(zip(rows, tasks, strict=True))[: limit or None]:
        turns = [{"role": role, "content": text} for role, text in task.history]
        turns.append({"role": "user", "content": task.question})
        lines.append(
            json.dumps(
                {
                    "key": task.task_id.replace("<::>", "-")[:64],
                    "input": turns,
                    "reference_answer": task.golds[0] if task.golds else None,
                    "expected_sources": list(dict.fromkeys(source_for(c) for c in row["contexts"])),
                    "answerability": task.answerability,
                    "tags": [task.answerability.lower()],
                }
            )
        )
    out.write_text("\n".join(lines) + "\n")
    return len(lines), passages


def documents(runtime: Runtime, tenant: str) -> int:
    with runtime.database.reading() as session:
        return (
            session.scalar(select(func.count()).select_from(Document).where(Document.tenant == tenant)) or 0
        )


def execute(runtime: Runtime, tenant: str, request: RunRequest) -> tuple[RunRecord, float]:
    runs = runtime.evals.runs
    run = runs.create(tenant, request, enqueue=False)
    started = time.perf_counter()
    runs.execute(
        run.id, on_progress=lambda r: print(f"\r{r.id} {r.done + r.failed}/{r.total}", end="", flush=True)
    )
    print()
    return runs.get(tenant, run.id), time.perf_counter() - started


def table(summary: dict[str, Any]) -> list[str]:
    lines = [
        "| metric | value | 95 % CI | items | per trial | trial sd |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, m in summary["metrics"].items():
        per_trial = " / ".join(f"{v:.3f}" for v in m["per_trial"])
        lines.append(
            f"| {name} | {m['value']:.3f} | {m['low']:.3f} to {m['high']:.3f} | {m['n']} | {per_trial} | {m['trial_std']:.3f} |"
        )
    return lines


def run_mtrag(
    runtime: Runtime, data: Path, limit: int, trials: int, work: Path, name: str
) -> tuple[dict[str, Any], list[str]]:
    file = work / "mtrag.jsonl"
    count, passages = mtrag_file(data, limit, work / "mtrag.jsonl")
    total = len(data.read_text().splitlines())
    present = documents(runtime, MTRAG_TENANT)
    ingest_s = 0.0 if present >= len(passages) else ingest_mtrag(runtime, passages)
    started = time.perf_counter()
    info = runtime.evals.datasets.write(
        MTRAG_TENANT, "mtrag-govt", parse(file.read_text(), file.name), origin="import"
    )
    import_s = time.perf_counter() - started
    run, seconds = execute(
        runtime,
        MTRAG_TENANT,
        RunRequest(
            dataset="mtrag-govt",
            target="copilot",
            trials=trials,
            concurrency=2,
            config={"copilot": {"company": COMPANY}},
        ),
    )
    runs = runtime.evals.runs
    report = run_report(run, runs.results(MTRAG_TENANT, run.id), runs.items_of(run))
    (RESULTS / f"{name}.html").write_text(report)
    served = run.config.get("prompt") or {}
    lines = [
        f"## MTRAG govt, copilot target: {count} of {total} tasks x {trials} trials",
        "",
        f"{len(passages)} passages ingested in {ingest_s:.0f} s (0: ingested by an earlier invocation); dataset imported (version {info.version},"
        f" {info.item_count} items) in {import_s:.2f} s; run {run.id} ({run.status}, {run.failed} failed)"
        f" took {seconds:.0f} s ({seconds / max(1, run.total):.1f} s per reply). Report: {name}.html.",
        f"Prompt: `{served.get('label')}` served {served.get('name')}@{served.get('version')} as the run"
        f" started; the items' model calls used {', '.join(run.summary.get('prompt_versions', [])) or 'none'}.",
        "",
        *table(run.summary),
    ]
    data_out = {
        "tasks": count,
        "trials": trials,
        "run": run.id,
        "status": run.status,
        "seconds": seconds,
        "ingest_s": ingest_s,
        "summary": run.summary,
        "prompt": served,
    }
    return data_out, lines


def run_scifact(runtime: Runtime, data: Path) -> tuple[dict[str, Any], list[str]]:
    corpus = scifact.load_corpus(data)
    queries = {
        q["_id"]: q["text"] for q in map(json.loads, (data / "queries.jsonl").read_text().splitlines())
    }
    test = scifact.load_qrels(data / "qrels/test.tsv")
    present = documents(runtime, scifact.TENANT)
    ingest_s = 0.0 if present >= len(corpus) else scifact.ingest(runtime, scifact.corpus_requests(corpus))
    items = [
        {"key": query_id, "input": queries[query_id], "expected_sources": sorted(relevant)}
        for query_id, relevant in test.items()
    ]
    file = Path(tempfile.mkdtemp()) / "scifact.jsonl"
    file.write_text("".join(json.dumps(i) + "\n" for i in items))
    runtime.evals.datasets.write(scifact.TENANT, "scifact-test", parse(file.read_text(), file.name))
    # The retrieval bench's own figure, on this same index, for the same settings.
    bench_ndcg = asyncio.run(scifact.run_queries(runtime, queries, test, mode="hybrid", fusion="rrf"))[0]
    base, base_s = execute(
        runtime,
        scifact.TENANT,
        RunRequest(dataset="scifact-test", target="retrieval", config=SCIFACT_CONFIG, concurrency=2),
    )
    again, _ = execute(
        runtime,
        scifact.TENANT,
        RunRequest(dataset="scifact-test", target="retrieval", config=SCIFACT_CONFIG, concurrency=2),
    )
    worse, _ = execute(
        runtime,
        scifact.TENANT,
        RunRequest(dataset="scifact-test", target="retrieval", config=WORSE, concurrency=2),
    )
    allowances = [parse_allowance(a) for a in GATE]
    runs = runtime.evals.runs
    same = gate(compare_runs(runs, scifact.TENANT, base.id, again.id), allowances)
    caught = gate(compare_runs(runs, scifact.TENANT, base.id, worse.id), allowances)
    # The summary rounds to six places; the equality is checked on the unrounded per-query scores.
    per_query = [r.scores["ndcg@10"] for r in runs.results(scifact.TENANT, base.id)]
    eval_ndcg = sum(per_query) / len(per_query)
    lines = [
        "## SciFact test, retrieval target (hybrid, RRF k=60, 200 candidates, 100 results)",
        "",
        f"{len(corpus)} passages ingested in {ingest_s:.0f} s (0: by an earlier invocation);"
        f" 300 queries per run in {base_s:.1f} s.",
        f"nDCG@10 from the evaluation run: {eval_ndcg:.6f}; from bench/retrieval_scifact.py's own"
        f" computation on the same index: {bench_ndcg:.6f} (difference {abs(eval_ndcg - bench_ndcg):.1e}).",
        "",
        *table(base.summary),
        "",
        f"## Gate (`{' '.join('--max-drop ' + g for g in GATE)}`)",
        "",
        "| candidate | gate | checks |",
        "| --- | --- | --- |",
        f"| same configuration again ({again.id}) | {'passed' if same.passed else 'FAILED'} | "
        + "; ".join(f"{c.metric}: {c.reason}" for c in same.checks)
        + " |",
        f"| candidates = 1, k = 1 ({worse.id}) | {'passed' if caught.passed else 'failed (exit 1)'} | "
        + "; ".join(f"{c.metric}: {c.reason}" for c in caught.checks)
        + " |",
    ]
    data_out = {
        "ndcg@10_eval": eval_ndcg,
        "ndcg@10_bench": bench_ndcg,
        "ingest_s": ingest_s,
        "run_s": base_s,
        "summary": base.summary,
        "gate_same_passed": same.passed,
        "gate_worse_passed": caught.passed,
        "gate_same": [vars(c) for c in same.checks],
        "gate_worse": [vars(c) for c in caught.checks],
        "worse_summary": worse.summary,
    }
    return data_out, lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mtrag", type=Path, default=Path("../shared/data/support_qa/mtrag_govt_dev.jsonl"))
    parser.add_argument("--scifact", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--mtrag-limit", type=int, default=24, help="0: all tasks.")
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--skip-mtrag", action="store_true")
    parser.add_argument("--skip-scifact", action="store_true")
    parser.add_argument("--data-dir", type=Path, default=None, help="Keep the database here between runs.")
    parser.add_argument("--results", default="eval_loop", help="The results' file name in bench/results/.")
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[str, Any] = {"load_average_start": os.getloadavg()}
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.data_dir or Path(scratch)
        knowledge = KnowledgeSettings(chunking={"text": ChunkingSettings(max_chars=20000)})
        runtime = Runtime.build(Settings(data_dir=Path(data_dir), knowledge=knowledge))
        runtime.prepare()
        runtime.warm_up()
        if not args.skip_scifact:
            results["scifact"], section = run_scifact(runtime, args.scifact)
            lines += [*section, ""]
            write_results(args.results, results, "\n".join(lines))
        if not args.skip_mtrag:
            report = "eval_loop_mtrag" if args.results == "eval_loop" else args.results
            results["mtrag"], section = run_mtrag(
                runtime, args.mtrag, args.mtrag_limit, args.trials, Path(scratch), report
            )
            lines += [*section, ""]
        runtime.close()
    results["load_average_end"] = os.getloadavg()
    results["total_s"] = time.perf_counter() - started
    lines.append(
        f"Total {results['total_s']:.0f} s on 2 shared cores; load average at start"
        f" {results['load_average_start'][0]:.2f}, at end {results['load_average_end'][0]:.2f}."
    )
    print(f"load average: {os.getloadavg()}")
    write_results(args.results, results, "\n".join(lines))


if __name__ == "__main__":
    main()
