"""The run: parses the command line, starts the paths, measures them and writes the results."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import bench.gateway_overhead as package
from bench.gateway_overhead.loadgen import generate_load, run_loadgen
from bench.gateway_overhead.paths import check, start_paths
from bench.gateway_overhead.processes import machine_busy_seconds, own_cpu_seconds, tree_rss_mib, wait_idle
from bench.gateway_overhead.report import report
from bench.gateway_overhead.rounds import (
    customer_questions,
    latency_rounds,
    latency_stats,
    require_ok,
    throughput_rounds,
)
from bench.gateway_overhead.semantic import keep_semantic_results, measure_semantic
from bench.harness import write_results


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.gateway_overhead",
        description=package.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "loadgen"])
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds, interleaved across the paths (latency and throughput)"
    )
    parser.add_argument("--per-round", type=int, default=60, help="requests per path and round")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0, help="throughput window per path")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="the mock upstream's fixed delay")
    parser.add_argument("--litellm", default=None, help="path of the `litellm` executable")
    parser.add_argument("--skip-semantic", action="store_true")
    parser.add_argument(
        "--prompt-only",
        action="store_true",
        help="only direct, Keel and Keel with a prompt reference; results in gateway_overhead_prompt.*",
    )
    args = parser.parse_args()
    args.skip_semantic = args.skip_semantic or args.prompt_only
    if args.mode == "loadgen":
        print(json.dumps(asyncio.run(generate_load(json.loads(sys.stdin.read())))))
        return

    started = time.perf_counter()
    busy_before, own_before = machine_busy_seconds(), own_cpu_seconds()
    load_before = Path("/proc/loadavg").read_text().split()[0]
    data: dict[str, Any] = {
        "settings": {
            "rounds": args.rounds,
            "per_round": args.per_round,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "upstream_delay_ms": args.delay_ms,
        }
    }
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        targets = start_paths(stack, workdir, args.delay_ms, args.prompt_only, args.litellm, data)
        # /readyz may turn 200 while warm-ups still run in the background: measure a quiet server.
        data["idle_wait_s"] = {t.name: wait_idle(t.pid) for t in targets if t.pid is not None}
        for target in targets:
            check(target)

        questions = customer_questions()
        data["user_messages"] = len(questions)
        raw, data["cpu_ms_per_request_1_in_flight"], data["latency_statuses"] = latency_rounds(
            targets, args.rounds, args.per_round, args.warmup, questions
        )
        data["latency_ms"] = {name: latency_stats(values) for name, values in raw.items()}
        # For scale: Keel answering from its exact cache (the first warm-up request fills it).
        keel_target = targets[1]
        cached_body = {key: value for key, value in keel_target.body.items() if key != "cache"}
        cached = run_loadgen(
            keel_target.spec(mode="latency", warmup=10, count=args.per_round) | {"body": cached_body}
        )
        require_ok("keel exact cache", cached["statuses"])
        data["keel_exact_hit_ms"] = latency_stats(cached["latencies_ms"])
        data["throughput"] = throughput_rounds(
            targets, args.concurrency, args.seconds, args.rounds, questions
        )
        data["rss_mib"] = {t.name: tree_rss_mib(t.pid) for t in targets if t.pid is not None}
        stack.close()
    direct = data["latency_ms"]["direct"]
    data["added_latency_ms"] = {
        name: {q: stats[q] - direct[q] for q in ("p50", "p95", "p99")}
        for name, stats in data["latency_ms"].items()
        if name != "direct"
    }
    if "litellm" in data["added_latency_ms"]:
        added = data["added_latency_ms"]
        data["keel_to_litellm_added_p50"] = added["keel"]["p50"] / added["litellm"]["p50"]
        if "keel_guards_off" in added:
            data["keel_guards_off_to_litellm_added_p50"] = (
                added["keel_guards_off"]["p50"] / added["litellm"]["p50"]
            )

    if args.prompt_only:
        pass
    elif args.skip_semantic:
        keep_semantic_results(data)
    else:
        data["semantic"] = measure_semantic()
    data["total_s"] = time.perf_counter() - started
    others = (machine_busy_seconds() - busy_before) - (own_cpu_seconds() - own_before)
    cores = len(os.sched_getaffinity(0))
    # What else ran on the machine meanwhile: other work on the same cores makes every number noisier.
    data["noise"] = {
        "load_1min_before": float(load_before),
        "other_processes_cpu_s": others,
        "other_processes_share_of_cores": others / (data["total_s"] * cores),
    }
    write_results(_results_name(args), data, report(data))


def _results_name(args: argparse.Namespace) -> str:
    """The targets' run keeps the plain name; a run against a slower upstream is kept beside it."""
    name = "gateway_overhead_prompt" if args.prompt_only else "gateway_overhead"
    return f"{name}_upstream_{args.delay_ms:g}ms" if args.delay_ms else name
