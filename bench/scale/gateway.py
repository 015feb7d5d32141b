"""1. The gateway path through one replica and through two: the keep-alive load (`python -m bench.scale
loadgen`) and the rounds that alternate the layouts."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from bench.gateway_overhead.constants import MODEL_ALIAS, PROMPT
from bench.gateway_overhead.loadgen import Connection
from bench.harness import percentile
from bench.scale.fleet import Proc, cpu_seconds, run_client
from bench.scale.plan import Plan


async def gateway_load(spec: dict[str, Any]) -> dict[str, Any]:
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
