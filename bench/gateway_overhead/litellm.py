"""LiteLLM's proxy beside Keel: where its executable is found, its config, starting and stopping it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bench.gateway_overhead.constants import LITELLM_MASTER_KEY, LITELLM_VENV, MODEL_ALIAS
from bench.harness import free_port


def _wait_http(url: str, process: subprocess.Popen[bytes], limit_s: float) -> float:
    started = time.perf_counter()
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode} before {url} answered")
        if time.perf_counter() - started > limit_s:
            raise RuntimeError(f"{url} did not answer within {limit_s:.0f} s")
        time.sleep(0.1)


def find_litellm(explicit: str | None) -> str | None:
    for candidate in (
        explicit,
        os.environ.get("LITELLM_BIN"),
        str(LITELLM_VENV / "bin" / "litellm"),
        str(Path(sys.executable).parent / "litellm"),
        shutil.which("litellm"),
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return str(Path(candidate).absolute())  # the proxy runs in a work folder of its own
    return None


def litellm_yaml(upstream_port: int) -> str:
    return f"""model_list:
  - model_name: {MODEL_ALIAS}
    litellm_params:
      model: openai/mock
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: sk-mock
litellm_settings:
  drop_params: true
  telemetry: false
general_settings:
  master_key: {LITELLM_MASTER_KEY}
"""


@contextmanager
def litellm_proxy(
    binary: str, upstream_port: int, workdir: Path
) -> Iterator[tuple[int, subprocess.Popen[bytes], float]]:
    config = workdir / "litellm.yaml"
    config.write_text(litellm_yaml(upstream_port))
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "REDIS_HOST", "LITELLM_MASTER_KEY"}
    }
    env |= {"LITELLM_TELEMETRY": "False", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    log_path = workdir / "litellm.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--num_workers",
                "1",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    try:
        try:
            ready = _wait_http(f"http://127.0.0.1:{port}/health/liveliness", process, 240)
        except RuntimeError as exc:
            tail = log_path.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"{exc}; its log ends: {tail}") from exc
        yield port, process, ready
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def litellm_version(binary: str) -> str:
    python = Path(binary).parent / "python"
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"
