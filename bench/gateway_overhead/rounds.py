"""The latency and throughput rounds: each path in turn, the load from a process of its own."""

from __future__ import annotations

import csv
from typing import Any

from bench.gateway_overhead.constants import BANKING77, MAX_REFUSED_SHARE
from bench.gateway_overhead.loadgen import run_loadgen
from bench.gateway_overhead.paths import Target
from bench.gateway_overhead.processes import cpu_seconds
from bench.harness import percentile, summary


def customer_questions() -> list[str]:
    """The user messages the paths are timed with, one per request: real customer messages (banking77's
    training texts), so that the guards read a different text each time, as they would in service. None
    when the data set is not there (then every request asks PROMPT's question)."""
    if not BANKING77.is_file():
        return []
    with BANKING77.open(encoding="utf-8", newline="") as rows:
        return [row["text"].strip() for row in csv.DictReader(rows) if row["text"].strip()]


def latency_rounds(
    targets: list[Target], rounds: int, per_round: int, warmup: int, questions: list[str]
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, dict[str, int]]]:
    """1 request in flight; the rounds rotate through the paths so that drift hits all alike. Returns the
    latencies of the answered requests, each proxy's CPU time per request (warm-ups included) and the
    replies' statuses (a guard may refuse the odd customer message)."""
    measured: dict[str, list[float]] = {t.name: [] for t in targets}
    cpu_s: dict[str, float] = {t.name: 0.0 for t in targets if t.pid is not None}
    sent: dict[str, int] = {t.name: 0 for t in targets}
    statuses: dict[str, dict[str, int]] = {t.name: {} for t in targets}
    for round_number in range(rounds):
        for target in targets:
            spec = target.spec(
                mode="latency",
                warmup=warmup if round_number == 0 else 10,
                count=per_round,
                questions=questions,
                start=sent[target.name],
            )
            cpu_before = cpu_seconds(target.pid) if target.pid is not None else 0.0
            result = run_loadgen(spec)
            if target.pid is not None:
                cpu_s[target.name] += cpu_seconds(target.pid) - cpu_before
            require_ok(target.name, result["statuses"])
            for status, count in result["statuses"].items():
                statuses[target.name][status] = statuses[target.name].get(status, 0) + count
            measured[target.name] += result["latencies_ms"]
            sent[target.name] += spec["warmup"] + spec["count"]
    cpu = {name: seconds * 1000 / sent[name] for name, seconds in cpu_s.items()}
    return measured, cpu, statuses


def throughput_rounds(
    targets: list[Target], concurrency: int, seconds: float, rounds: int, questions: list[str]
) -> dict[str, dict[str, Any]]:
    """`concurrency` in flight for `seconds` per path, split into rounds that rotate through the paths
    (1 s warm-up before each, 2 s before the first). Requests/s over the measured windows, latency under
    load, and the proxy's CPU time per request (its whole process tree, warm-ups included, over every
    request it answered)."""
    totals: dict[str, dict[str, Any]] = {
        t.name: {"latencies": [], "completed": 0, "cpu_s": 0.0, "errors": 0, "statuses": {}} for t in targets
    }
    for round_number in range(rounds):
        for target in targets:
            total = totals[target.name]
            cpu_before = cpu_seconds(target.pid) if target.pid is not None else 0.0
            result = run_loadgen(
                target.spec(
                    mode="throughput",
                    concurrency=concurrency,
                    warmup_s=2.0 if round_number == 0 else 1.0,
                    duration_s=seconds / rounds,
                    questions=questions,
                    start=total["completed"],
                )
            )
            if target.pid is not None:
                total["cpu_s"] += cpu_seconds(target.pid) - cpu_before
            total["latencies"] += result["latencies_ms"]
            total["completed"] += result["completed"]
            total["errors"] += result["errors"]
            for status, count in result["statuses"].items():
                total["statuses"][status] = total["statuses"].get(status, 0) + count
    measured = {}
    for target in targets:
        total = totals[target.name]
        latencies = total["latencies"]
        measured[target.name] = {
            "requests_per_s": len(latencies) / seconds,
            "cpu_ms_per_request": total["cpu_s"] * 1000 / max(1, total["completed"])
            if target.pid is not None
            else None,
            "statuses": total["statuses"],
            "errors": total["errors"],
            "p50_ms": percentile(latencies, 50) if latencies else None,
            "p99_ms": percentile(latencies, 99) if latencies else None,
        }
    return measured


def require_ok(name: str, statuses: dict[str, int]) -> None:
    """Every reply a 200, but for the odd customer message a guard refuses (a 400, timed out of the
    figures and counted in the results' statuses)."""
    total = sum(statuses.values())
    if set(statuses) - {"200", "400"} or statuses.get("400", 0) > MAX_REFUSED_SHARE * total:
        raise RuntimeError(f"{name}: non-200 replies {statuses}")


def latency_stats(values: list[float]) -> dict[str, float]:
    return {**summary(values), "p50": percentile(values, 50), "p99": percentile(values, 99)}
