"""How fast a live `keel serve` refuses hostile requests: a 20 MB chat body (declared length, and chunked
without one), a 20 MB search body, and a chat message of about 100,000 tokens. Each must be refused
(413, 400) at the HTTP boundary in well under a second, not after the guard or the model worked on it.

    python -m bench.refusal_latency [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

import httpx

from bench.harness import free_port, summary, write_results

MiB = 1024 * 1024
MESSAGE_100K_TOKENS = "please check my order status today " * 17_000  # ~100k tokens, ~600 KB


def chat_body(content: str) -> bytes:
    import json

    return json.dumps(
        {"model": "keel-local", "messages": [{"role": "user", "content": content}], "max_tokens": 4}
    ).encode()


def chunks(body: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def serve() -> tuple[subprocess.Popen[bytes], str, str]:
    data_dir = tempfile.mkdtemp()
    env = {**os.environ, "KEEL_DATA_DIR": data_dir, "KEEL_LOG_LEVEL": "warning"}
    keel = [sys.executable, "-m", "keel"]
    key = subprocess.run(
        [*keel, "keys", "create", "--tenant", "bench", "--role", "app"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    port = free_port()
    process = subprocess.Popen([*keel, "serve", "--port", str(port)], env=env)
    return process, f"http://127.0.0.1:{port}", key


def wait_until_answering(base: str, key: str, process: subprocess.Popen[bytes]) -> None:
    """Until a small chat is answered: both models loaded, the guard warm."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("keel serve exited")
        try:
            response = httpx.post(
                f"{base}/v1/chat/completions",
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                content=chat_body("Hello"),
                timeout=300,
            )
            if response.status_code == 200:
                return
            print("not answering yet:", response.status_code, response.text[:200])
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError("keel serve did not answer")


def timed(call: Callable[[], httpx.Response]) -> tuple[float, int, str]:
    started = time.perf_counter()
    response = call()
    elapsed = time.perf_counter() - started
    return elapsed, response.status_code, response.json()["error"]["code"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print("load average before:", os.getloadavg())
    process, base, key = serve()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    big_chat = chat_body("x" * (20 * MiB))
    big_search = b'{"query": "' + b"x" * (20 * MiB) + b'"}'
    long_chat = chat_body(MESSAGE_100K_TOKENS)
    cases: dict[str, Callable[[httpx.Client], httpx.Response]] = {
        "20 MB chat body (Content-Length)": lambda c: c.post("/v1/chat/completions", content=big_chat),
        "20 MB chat body (chunked, no length)": lambda c: c.post(
            "/v1/chat/completions", content=chunks(big_chat)
        ),
        "20 MB search body": lambda c: c.post("/v1/search", content=big_search),
        "100k-token chat message (600 KB)": lambda c: c.post("/v1/chat/completions", content=long_chat),
    }
    try:
        wait_until_answering(base, key, process)
        results = {}
        for name, call in cases.items():
            seconds, statuses = [], set()
            for _ in range(args.repeats):
                # A fresh connection each time: the server closes one whose body it did not read.
                with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
                    elapsed, status, code = timed(lambda: call(client))  # noqa: B023
                seconds.append(elapsed)
                statuses.add(f"{status} {code}")
            results[name] = {"seconds": summary(seconds), "responses": sorted(statuses)}
    finally:
        process.terminate()
        process.wait(timeout=60)
    load = os.getloadavg()
    print("load average after:", load)
    rows = "\n".join(
        f"| {name} | {', '.join(r['responses'])} | {r['seconds']['median'] * 1000:.0f} ms | "
        f"{r['seconds']['max'] * 1000:.0f} ms |"
        for name, r in results.items()
    )
    table = (
        "Time from sending the request to the refusal, client side, against a live `keel serve` "
        f"(models loaded), {args.repeats} runs each; load average after {load[0]:.2f}.\n\n"
        "| request | response | median | max |\n| --- | --- | --- | --- |\n" + rows
    )
    write_results("refusal_latency", {"repeats": args.repeats, "load_average": load, "cases": results}, table)


if __name__ == "__main__":
    main()
