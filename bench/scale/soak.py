"""4. Soak: a bounded open-loop load over both replicas (`python -m bench.scale soak`), memory sampled."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx

from bench.gateway_overhead.constants import MODEL_ALIAS, PROMPT
from bench.gateway_overhead.processes import tree_rss_mib
from bench.harness import percentile
from bench.scale.fleet import Proc, load_average
from bench.scale.ingestion import VOCABULARY
from bench.scale.plan import ROOT, RSS_EVERY_S, Plan


async def soak_load(spec: dict[str, Any]) -> dict[str, Any]:
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
