"""A live `keel serve` subprocess on 127.0.0.1 for tests that need a real server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

KEEL = [sys.executable, "-m", "keel"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def keel_env(data_dir: Path) -> dict[str, str]:
    return {**os.environ, "KEEL_DATA_DIR": str(data_dir), "KEEL_LOG_LEVEL": "warning"}


def create_key(data_dir: Path, tenant: str, role: str, extra_env: dict[str, str] | None = None) -> str:
    return subprocess.run(
        [*KEEL, "keys", "create", "--tenant", tenant, "--role", role],
        env={**keel_env(data_dir), **(extra_env or {})},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def start_server(
    data_dir: Path, port: int, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Starts `keel serve` and returns once `/readyz` answers 200."""
    process = subprocess.Popen(
        [*KEEL, "serve", "--port", str(port)], env={**keel_env(data_dir), **(extra_env or {})}
    )
    # A first start loads both models and fits two classifiers: minutes on a busy 2-core machine.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError("keel serve exited")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("keel serve did not become ready")
