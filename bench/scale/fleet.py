"""The processes of the tier: every `keel` process the bench starts (so that all are stopped), their
CPU time, readiness, and the client processes that load them."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.services.pg import TestPostgres

from bench.harness import free_port
from bench.scale.plan import ROOT

# -- processes ------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (threads included)."""
    total = 0.0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, chars: int = 2000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


@dataclass
class Fleet:
    """Every process the bench starts, so that all of them are stopped whatever happens."""

    workdir: Path
    env: dict[str, str]
    procs: list[Proc] = field(default_factory=list)

    def keel(self, *args: str, data_dir: str = "cli") -> str:
        env = {**self.env, "KEEL_DATA_DIR": str(self.workdir / data_dir)}
        result = subprocess.run(
            [sys.executable, "-m", "keel", *args], env=env, capture_output=True, text=True, timeout=600
        )
        if result.returncode != 0:
            raise RuntimeError(f"keel {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout.strip()

    def start(self, name: str, args: list[str], port: int | None = None) -> Proc:
        log = self.workdir / f"{name}.log"
        env = {**self.env, "KEEL_DATA_DIR": str(self.workdir / f"data-{name}")}
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "keel", *args], env=env, stdout=handle, stderr=subprocess.STDOUT
            )
        proc = Proc(name, process, log, port)
        self.procs.append(proc)
        return proc

    def replica(self, name: str) -> Proc:
        port = free_port()
        return self.start(name, ["serve", "--port", str(port)], port)

    def stop(self, proc: Proc, sig: int = signal.SIGTERM, timeout_s: float = 60.0) -> float:
        """Sends `sig`, waits for the exit (killing after `timeout_s`); returns the seconds it took."""
        started = time.perf_counter()
        if proc.process.poll() is None:
            proc.process.send_signal(sig)
            try:
                proc.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                proc.process.kill()
                proc.process.wait()
        if proc in self.procs:
            self.procs.remove(proc)
        return time.perf_counter() - started

    def stop_all(self) -> None:
        for proc in reversed(list(self.procs)):
            with contextlib.suppress(Exception):
                self.stop(proc)


def wait_ready(proc: Proc, limit_s: float = 900.0) -> float:
    """Seconds from the replica's process start until its /readyz answers 200."""
    started = proc.started
    url = f"http://127.0.0.1:{proc.port}/readyz"
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        if proc.process.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}: {proc.log_tail()}")
        if time.perf_counter() - started > limit_s:
            raise RuntimeError(f"{proc.name} not ready within {limit_s:.0f} s: {proc.log_tail()}")
        time.sleep(0.25)


def postmaster_pid(postgres: TestPostgres) -> int:
    return int((postgres.pgdata / "postmaster.pid").read_text().split()[0])


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_client(mode: str, spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.scale", mode],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=timeout_s,
    )
    data: dict[str, Any] = json.loads(result.stdout)
    return data
