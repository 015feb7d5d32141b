"""The servers behind and in front of the paths: the mock upstream, and `keel serve` with a bench keel.toml."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.gateway_overhead.constants import MODEL_ALIAS
from bench.harness import free_port, live_server


@contextmanager
def mock_upstream(delay_ms: float, echo: bool = False) -> Iterator[int]:
    port = free_port()
    command = [sys.executable, "-m", "bench.mock_upstream", "--port", str(port), "--delay-ms", str(delay_ms)]
    process = subprocess.Popen([*command, *(["--echo"] if echo else [])])
    try:
        _wait_for_port(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    import socket

    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError("the mock upstream exited")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("the mock upstream did not listen")


def guards_off_toml() -> str | None:
    """Config that switches off the per-request guards of `/v1/chat/completions` (prompt-injection check,
    personal-data pseudonymisation for external providers), if this Keel has them; else None."""
    from keel.config import Settings

    field = Settings.model_fields.get("guard")
    known = getattr(field.annotation, "model_fields", {}) if field is not None else {}
    wanted = {"injection_api": "off", "pii_external": "off"}
    if not set(wanted) <= set(known):
        return None
    return "[guard]\n" + "".join(f'{name} = "{value}"\n' for name, value in wanted.items())


def keel_toml(upstream_port: int, semantic_threshold: float | None = None, extra: str = "") -> str:
    lines = [
        "[gateway.deployments.mock]",
        'provider = "openai"',
        f'base_url = "http://127.0.0.1:{upstream_port}/v1"',
        'model = "mock"',
        "",
        f"[gateway.aliases.{MODEL_ALIAS}]",
        'deployments = ["mock"]',
    ]
    if semantic_threshold is not None:
        lines += ["", "[gateway.cache]", "semantic = true", f"semantic_threshold = {semantic_threshold}"]
    return "\n".join(lines) + "\n" + (f"\n{extra}" if extra else "")


@contextmanager
def keel(config: str, workdir: Path, name: str) -> Iterator[tuple[str, str, subprocess.Popen[bytes], float]]:
    config_file = workdir / f"{name}.toml"
    config_file.write_text(config)
    with live_server({"KEEL_CONFIG_FILE": str(config_file)}) as server:
        yield server.base_url, server.key, server.process, server.ready_seconds
