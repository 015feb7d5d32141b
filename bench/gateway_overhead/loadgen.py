"""The load generator: a raw asyncio HTTP/1.1 keep-alive client that runs in a process of its own
(`python -m bench.gateway_overhead loadgen`, a JSON spec on stdin, the results as JSON on stdout)."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


class Connection:
    """One keep-alive HTTP/1.1 connection: a prebuilt request head, Content-Length or chunked replies."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str]) -> None:
        self._host, self._port, self._path = host, port, path
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self._head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n{extra}"
        )
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes, timeout_s: float = 60.0) -> Reply:
        try:
            return await asyncio.wait_for(self._post(body), timeout_s)
        except BaseException:
            self.close()
            raise

    async def _post(self, body: bytes) -> Reply:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        self._writer.write(f"{self._head}content-length: {len(body)}\r\n\r\n".encode() + body)
        head = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            payload = bytearray()
            while size := int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16):
                payload += await self._reader.readexactly(size + 2)
                del payload[-2:]
            await self._reader.readuntil(b"\r\n")
            data = bytes(payload)
        else:
            data = await self._reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return Reply(status, headers, data)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None


async def generate_load(spec: dict[str, Any]) -> dict[str, Any]:
    host, port, path, headers = spec["host"], spec["port"], spec["path"], spec["headers"]
    mode = spec["mode"]
    statuses: dict[str, int] = {}
    errors: list[str] = []

    def note(reply: Reply) -> None:
        statuses[str(reply.status)] = statuses.get(str(reply.status), 0) + 1

    if mode == "sequence":
        connection = Connection(host, port, path, headers)
        replies = []
        for body in spec["bodies"]:
            started = time.perf_counter()
            reply = await connection.post(json.dumps(body).encode())
            elapsed_ms = (time.perf_counter() - started) * 1000
            note(reply)
            replies.append(
                {
                    "ms": elapsed_ms,
                    "status": reply.status,
                    "cache": reply.headers.get("x-keel-cache", ""),
                    "text": _answer_text(reply.body),
                }
            )
        connection.close()
        return {"replies": replies, "statuses": statuses}

    payloads = _payloads(spec["body"], spec.get("questions") or [], spec.get("start", 0))
    if mode == "latency":
        connection = Connection(host, port, path, headers)
        for _ in range(spec["warmup"]):
            await connection.post(next(payloads))
        latencies: list[float] = []
        for _ in range(spec["count"]):
            payload = next(payloads)
            started = time.perf_counter()
            reply = await connection.post(payload)
            if reply.status == 200:  # a refusal is quicker than an answer: not timed, only counted
                latencies.append((time.perf_counter() - started) * 1000)
            note(reply)
        connection.close()
        return {"latencies_ms": latencies, "statuses": statuses}

    # throughput: `concurrency` workers, each one connection, back to back for warmup_s + duration_s.
    started = time.perf_counter()
    window_start = started + spec["warmup_s"]
    window_end = window_start + spec["duration_s"]
    latencies = []
    completed = 0

    async def worker() -> None:
        nonlocal completed
        connection = Connection(host, port, path, headers)
        while (now := time.perf_counter()) < window_end:
            try:
                reply = await connection.post(next(payloads), timeout_s=30.0)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                errors.append(type(exc).__name__)
                await asyncio.sleep(0.01)
                continue
            done = time.perf_counter()
            completed += 1
            if now >= window_start and done <= window_end:
                if reply.status == 200:
                    latencies.append((done - now) * 1000)
                note(reply)
        connection.close()

    await asyncio.gather(*(worker() for _ in range(spec["concurrency"])))
    return {
        "latencies_ms": latencies,
        "statuses": statuses,
        "errors": len(errors),
        "requests_per_s": len(latencies) / spec["duration_s"],
        "completed": completed,
    }


def _payloads(body: dict[str, Any], questions: list[str], start: int) -> Iterator[bytes]:
    """The request bodies to send, encoded before the clock starts: `body` as it is, or once per question
    with the question as the user's message (or as the registry prompt's `question` variable)."""
    if not questions:
        return itertools.repeat(json.dumps(body).encode())
    encoded = []
    for question in questions[start % len(questions) :] + questions[: start % len(questions)]:
        varied = json.loads(json.dumps(body))
        if "prompt" in varied:
            varied["prompt"]["variables"]["question"] = question
        else:
            varied["messages"][-1]["content"] = question
        encoded.append(json.dumps(varied).encode())
    return itertools.cycle(encoded)


def _answer_text(body: bytes) -> str:
    try:
        return str(json.loads(body)["choices"][0]["message"]["content"])
    except (ValueError, KeyError, IndexError, TypeError):
        return body[:200].decode("utf-8", "replace")


def run_loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs the load in a fresh process, so that the client does not share an event loop with anything."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.gateway_overhead", "loadgen"],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=600,
    )
    data: dict[str, Any] = json.loads(result.stdout)
    return data
