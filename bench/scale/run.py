"""The run: starts PostgreSQL, Redis, the mock and the replicas, runs the phases, writes the results."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from tests.services.pg import TestPostgres, start_postgres

import bench.scale as package
from bench.gateway_overhead.constants import MODEL_ALIAS, PROMPT
from bench.gateway_overhead.processes import tree_rss_mib, wait_idle
from bench.gateway_overhead.servers import keel_toml, mock_upstream
from bench.harness import RESULTS, machine, write_results
from bench.scale.fleet import Fleet, load_average, postmaster_pid, wait_ready
from bench.scale.gateway import gateway_load, gateway_phase
from bench.scale.ingestion import ingestion_phase
from bench.scale.plan import REDIS_URL, TENANT, UI_SECRET, Plan
from bench.scale.report import report
from bench.scale.search import search_phase
from bench.scale.soak import soak_load, soak_phase
from bench.scale.stop import stop_phase

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


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=package.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
        print(json.dumps(asyncio.run(gateway_load(json.loads(sys.stdin.read())))))
        return
    if args.mode == "soak":
        print(json.dumps(asyncio.run(soak_load(json.loads(sys.stdin.read())))))
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
