"""Shared bench plumbing: a live `keel serve` subprocess, percentiles, and result files (JSON + Markdown)."""

from __future__ import annotations

import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).parent / "results"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": percentile(values, 95),
        "min": min(values),
        "max": max(values),
    }


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def machine() -> dict[str, Any]:
    return {
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    base_url: str
    key: str
    process: subprocess.Popen[bytes]
    ready_seconds: float


@contextmanager
def live_server(extra_env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """`keel serve` on a free port with its own data dir; timed from process start to /readyz 200."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "KEEL_DATA_DIR": data_dir, "KEEL_LOG_LEVEL": "warning", **(extra_env or {})}
        keel = [sys.executable, "-m", "keel"]
        key = subprocess.run(
            [*keel, "keys", "create", "--tenant", "bench", "--role", "app"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        port = free_port()
        started = time.perf_counter()
        process = subprocess.Popen([*keel, "serve", "--port", str(port)], env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            while True:
                try:
                    if httpx.get(f"{base}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.perf_counter() - started > 300:
                    raise RuntimeError("keel serve did not become ready")
                time.sleep(0.05)
            yield LiveServer(base, key, process, time.perf_counter() - started)
        finally:
            process.terminate()
            process.wait(timeout=60)


def write_results(name: str, data: dict[str, Any], table: str) -> None:
    RESULTS.mkdir(exist_ok=True)
    data = {
        "benchmark": name,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        **data,
    }
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(
        f"# {name}\n\nMeasured {data['measured_at']} on {data['machine']}.\n\n{table}\n"
    )
    print(table)
