"""5. Stopping a consumer mid-job: a replica on SIGTERM, a worker on SIGTERM and on SIGINT."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.scale.fleet import Fleet, Proc, cpu_seconds
from bench.scale.ingestion import make_documents
from bench.scale.plan import REDIS_URL, TENANT, Plan

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
