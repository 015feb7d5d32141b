"""Gateway overhead: the latency and throughput Keel adds in front of an OpenAI-compatible upstream,
side by side with LiteLLM's proxy, plus the hit and false-hit rates of Keel's semantic cache.

Everything runs on 127.0.0.1 in one run:

1. A mock upstream (`bench/mock_upstream.py`, raw asyncio, its own process) answers
   `/v1/chat/completions` with a fixed small completion and usage (optional fixed delay, default 0).
2. Paths to it: (a) direct, (b) `keel serve` (own data dir, a `keel.toml` with a deployment `mock`
   {provider "openai"} behind the alias `bench`, an app key; `"cache": false` in the body so the cache
   is bypassed), (b') where this Keel has `[guard]` settings, a second Keel with the per-request guards
   of `/v1/chat/completions` off, to show what the gateway itself costs, (c) `litellm --config` (one
   openai-compatible model, `drop_params`, a master key, no database, telemetry off, local cost map).
3. The load comes from a separate process (this module's `loadgen` mode: a raw asyncio HTTP/1.1
   keep-alive client, so the client adds little of its own): latency at 1 request in flight, then
   requests/s at a fixed concurrency, both in rounds that rotate through the paths so that other work
   on the machine hits all alike (warm-up first). Added latency = a proxy's percentile minus the direct
   one. Targets: Keel's added p50 at most 0.3x LiteLLM's (0.2x with its guards off), an exact cache hit
   under 1 ms, and at least 2x LiteLLM's requests/s at 16 in flight with no errors. Also each proxy's CPU time per request and
   resident memory (process tree) after the load, Keel's exact-cache hit latency for scale, and how much
   CPU other processes used meanwhile (the machine may be shared: read the numbers with that).
4. Semantic cache: one Keel per threshold (0.90, 0.95, 0.98) with `gateway.cache.semantic = true` in
   front of an echoing mock (the answer names the question, so a hit shows which cached question
   served it). All base questions first (misses), then paraphrases (should hit their own base) and
   near-misses (different questions that look alike: any hit is a false hit); hit latency from
   repeated hits.

    .venv/bin/python -m bench.gateway_overhead [--rounds 5 --per-round 60 --concurrency 16 --seconds 15]

LiteLLM: `litellm[proxy]` pins older openai, rich and filelock than Keel's venv holds, so it runs from
a virtual environment of its own, which `make bench` creates (`.bench-venv/litellm`, from PyPI). It is
looked for at `--litellm` / `$LITELLM_BIN`, else there, else `litellm` beside this Python, else on PATH.
Without it the run reports direct vs Keel and says why LiteLLM is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench.harness import RESULTS, free_port, live_server, percentile, rss_mib, summary, write_results

MODEL_ALIAS = "bench"
BANKING77 = Path("../shared/data/intents/banking77_train.csv")
# Customer messages the injection guard may refuse (its measured false-positive rate on banking77 is 0.2 %).
MAX_REFUSED_SHARE = 0.02
# Where `make bench` installs LiteLLM's proxy, apart from Keel's own dependencies.
LITELLM_VENV = Path(__file__).resolve().parent.parent / ".bench-venv" / "litellm"
# The targets of issue #18: added p50 as a share of LiteLLM's, the exact-hit p50, the throughput ratio.
TARGET_DEFAULT_SHARE, TARGET_GUARDS_OFF_SHARE = 0.3, 0.2
TARGET_HIT_MS, TARGET_THROUGHPUT_RATIO = 1.0, 2.0
LITELLM_MASTER_KEY = "sk-bench-master"
PROMPT = [
    {"role": "system", "content": "You are a helpful support assistant for an e-bike shop."},
    {"role": "user", "content": "How long does a full charge of the battery take?"},
]
THRESHOLDS = (0.90, 0.95, 0.98)
HIT_REPEATS = 5

# (base question, the same question asked differently): the paraphrase should be served from the cache.
PARAPHRASES: list[tuple[str, str]] = [
    ("How long does it take to fully charge the battery?", "How many hours does a full battery charge take?"),
    ("What is your return policy?", "Can you explain your policy on returns?"),
    ("Do you ship to Canada?", "Is shipping to Canada available?"),
    ("How do I reset my password?", "What are the steps to reset my password?"),
    ("What are your opening hours on Saturday?", "When are you open on Saturdays?"),
    ("How can I track my order?", "Where can I see the tracking status of my order?"),
    ("Can I pay with PayPal?", "Do you accept PayPal as a payment method?"),
    ("How much does express shipping cost?", "What is the price of express shipping?"),
    ("How do I cancel my subscription?", "What do I need to do to cancel my subscription?"),
    ("Is the warranty transferable to a new owner?", "Can the warranty be transferred to a new owner?"),
    ("What is the maximum speed of the e-bike?", "How fast can the e-bike go at most?"),
    (
        "How should I store the battery over winter?",
        "What is the best way to store the battery during winter?",
    ),
    ("Do you offer student discounts?", "Is there a discount for students?"),
    ("How do I change the delivery address of my order?", "Can I update the shipping address on my order?"),
    ("What is the range of the battery on a single charge?", "How far can I ride on one battery charge?"),
    ("How do I contact customer support?", "What is the best way to reach customer support?"),
    ("Can I test ride a bike before buying?", "Is it possible to take a test ride before I buy a bike?"),
    ("How often should the brakes be serviced?", "How frequently do the brakes need servicing?"),
    ("Are your e-bikes waterproof?", "Are your e-bikes water resistant?"),
    (
        "How do I update the firmware of the display?",
        "What is the procedure for updating the display firmware?",
    ),
]

# (base question, a different question that looks alike): serving the second from the cache is wrong.
NEAR_MISSES: list[tuple[str, str]] = [
    ("What is the status of order 10234?", "What is the status of order 10243?"),
    ("Please refund order 5521.", "Please refund order 5522."),
    ("How much does the City 500 e-bike cost?", "How much does the Trail 700 e-bike cost?"),
    ("Do you ship to Austria?", "Do you ship to Australia?"),
    ("How long does the 500 Wh battery last?", "How long does the 750 Wh battery last?"),
    ("What are your opening hours on Monday?", "What are your opening hours on Sunday?"),
    ("Is the Commuter 3 in stock in size M?", "Is the Commuter 3 in stock in size L?"),
    ("How do I cancel my order?", "How do I return my order?"),
    ("What is the warranty on the motor?", "What is the warranty on the frame?"),
    ("Can I pay by credit card?", "Can I pay by bank transfer?"),
    (
        "Change the delivery date of order 7781 to Friday.",
        "Change the delivery date of order 7781 to Monday.",
    ),
    ("What is the weight limit of the cargo bike?", "What is the weight of the cargo bike?"),
    ("How do I turn on the headlight?", "How do I turn off the headlight?"),
    ("Is the battery included with the Trail 700?", "Is the charger included with the Trail 700?"),
    ("How much is shipping to Berlin?", "How much is shipping to Munich?"),
    (
        "Can I upgrade from the 500 Wh to the 750 Wh battery?",
        "Can I downgrade from the 750 Wh to the 500 Wh battery?",
    ),
    (
        "What tire pressure do you recommend for the road bike?",
        "What tire pressure do you recommend for the mountain bike?",
    ),
    ("Does the Trail 700 have a suspension fork?", "Does the City 500 have a suspension fork?"),
    ("Reset the password for user anna@example.com.", "Reset the password for user anne@example.com."),
    ("Is the store in Hamburg open today?", "Is the store in Hamburg open tomorrow?"),
]


# -- the load generator (runs in its own process) ------------------------------------------------------


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


async def _loadgen(spec: dict[str, Any]) -> dict[str, Any]:
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
        cwd=Path(__file__).resolve().parent.parent,
        timeout=600,
    )
    data: dict[str, Any] = json.loads(result.stdout)
    return data


# -- the servers ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    pid: int | None = None

    def spec(self, **extra: Any) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "path": self.path,
            "headers": self.headers,
            "body": self.body,
            **extra,
        }


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


def tree_rss_mib(pid: int) -> float:
    """Resident memory of a process and all its descendants."""
    total = 0.0
    for current in _tree_pids(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += rss_mib(current)
    return total


def _tree_pids(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(child) for child in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def _cpu_seconds(pid: int) -> float:
    total = 0.0
    for current in _tree_pids(pid):
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def wait_idle(pid: int, limit_s: float = 180.0) -> float:
    """Waits until a server is done with what it does after it says it is ready (background warm-ups):
    below 5 % of a core over two seconds in a row. Returns the seconds waited."""
    started = time.perf_counter()
    quiet = 0
    last = _cpu_seconds(pid)
    while quiet < 4 and time.perf_counter() - started < limit_s:
        time.sleep(0.5)
        now = _cpu_seconds(pid)
        quiet = quiet + 1 if now - last < 0.025 else 0
        last = now
    return time.perf_counter() - started


def _machine_busy_seconds() -> float:
    """CPU time every process on the machine has used since boot (user, nice, system, irq, softirq, steal)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[i] for i in (0, 1, 2, 5, 6, 7)) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    """This process and every child it waited for (the servers, the load generators)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def check(target: Target) -> None:
    reply = httpx.post(
        f"http://127.0.0.1:{target.port}{target.path}", json=target.body, headers=target.headers, timeout=60
    )
    if reply.status_code != 200:
        raise RuntimeError(f"{target.name}: {reply.status_code} {reply.text[:500]}")


# -- the measurements ----------------------------------------------------------------------------------


def user_messages_line(data: dict[str, Any]) -> str:
    count = data.get("user_messages", 0)
    if not count:
        return f"Every request asks the same user message: {PROMPT[1]['content']!r}."
    return (
        f"Each request's user message is the next of {count:,} real customer messages (banking77's "
        "training texts; the system message stays the same), on every path alike: the guards read a new "
        "text each time. The exact-cache row repeats one request."
        + "".join(
            f" `{name}` refused {found['400']} of {sum(found.values())} of them (400, not timed)."
            for name, found in data.get("latency_statuses", {}).items()
            if found.get("400")
        )
    )


def customer_questions() -> list[str]:
    """The user messages the paths are timed with, one per request: real customer messages (banking77's
    training texts), so that the guards read a different text each time, as they would in service. None
    when the data set is not there (then every request asks PROMPT's question)."""
    if not BANKING77.is_file():
        return []
    with BANKING77.open(encoding="utf-8", newline="") as rows:
        return [row["text"].strip() for row in csv.DictReader(rows) if row["text"].strip()]


def latency_rounds(
    targets: list[Target], rounds: int, per_round: int, warmup: int, questions: list[str]
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, dict[str, int]]]:
    """1 request in flight; the rounds rotate through the paths so that drift hits all alike. Returns the
    latencies of the answered requests, each proxy's CPU time per request (warm-ups included) and the
    replies' statuses (a guard may refuse the odd customer message)."""
    measured: dict[str, list[float]] = {t.name: [] for t in targets}
    cpu_s: dict[str, float] = {t.name: 0.0 for t in targets if t.pid is not None}
    sent: dict[str, int] = {t.name: 0 for t in targets}
    statuses: dict[str, dict[str, int]] = {t.name: {} for t in targets}
    for round_number in range(rounds):
        for target in targets:
            spec = target.spec(
                mode="latency",
                warmup=warmup if round_number == 0 else 10,
                count=per_round,
                questions=questions,
                start=sent[target.name],
            )
            cpu_before = _cpu_seconds(target.pid) if target.pid is not None else 0.0
            result = run_loadgen(spec)
            if target.pid is not None:
                cpu_s[target.name] += _cpu_seconds(target.pid) - cpu_before
            _require_ok(target.name, result["statuses"])
            for status, count in result["statuses"].items():
                statuses[target.name][status] = statuses[target.name].get(status, 0) + count
            measured[target.name] += result["latencies_ms"]
            sent[target.name] += spec["warmup"] + spec["count"]
    cpu = {name: seconds * 1000 / sent[name] for name, seconds in cpu_s.items()}
    return measured, cpu, statuses


def throughput_rounds(
    targets: list[Target], concurrency: int, seconds: float, rounds: int, questions: list[str]
) -> dict[str, dict[str, Any]]:
    """`concurrency` in flight for `seconds` per path, split into rounds that rotate through the paths
    (1 s warm-up before each, 2 s before the first). Requests/s over the measured windows, latency under
    load, and the proxy's CPU time per request (its whole process tree, warm-ups included, over every
    request it answered)."""
    totals: dict[str, dict[str, Any]] = {
        t.name: {"latencies": [], "completed": 0, "cpu_s": 0.0, "errors": 0, "statuses": {}} for t in targets
    }
    for round_number in range(rounds):
        for target in targets:
            total = totals[target.name]
            cpu_before = _cpu_seconds(target.pid) if target.pid is not None else 0.0
            result = run_loadgen(
                target.spec(
                    mode="throughput",
                    concurrency=concurrency,
                    warmup_s=2.0 if round_number == 0 else 1.0,
                    duration_s=seconds / rounds,
                    questions=questions,
                    start=total["completed"],
                )
            )
            if target.pid is not None:
                total["cpu_s"] += _cpu_seconds(target.pid) - cpu_before
            total["latencies"] += result["latencies_ms"]
            total["completed"] += result["completed"]
            total["errors"] += result["errors"]
            for status, count in result["statuses"].items():
                total["statuses"][status] = total["statuses"].get(status, 0) + count
    measured = {}
    for target in targets:
        total = totals[target.name]
        latencies = total["latencies"]
        measured[target.name] = {
            "requests_per_s": len(latencies) / seconds,
            "cpu_ms_per_request": total["cpu_s"] * 1000 / max(1, total["completed"])
            if target.pid is not None
            else None,
            "statuses": total["statuses"],
            "errors": total["errors"],
            "p50_ms": percentile(latencies, 50) if latencies else None,
            "p99_ms": percentile(latencies, 99) if latencies else None,
        }
    return measured


def _require_ok(name: str, statuses: dict[str, int]) -> None:
    """Every reply a 200, but for the odd customer message a guard refuses (a 400, timed out of the
    figures and counted in the results' statuses)."""
    total = sum(statuses.values())
    if set(statuses) - {"200", "400"} or statuses.get("400", 0) > MAX_REFUSED_SHARE * total:
        raise RuntimeError(f"{name}: non-200 replies {statuses}")


def latency_stats(values: list[float]) -> dict[str, float]:
    return {**summary(values), "p50": percentile(values, 50), "p99": percentile(values, 99)}


def semantic_run(keel_port: int, key: str, threshold: float) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {key}"}

    def body(question: str, prompt_version: str | None = None) -> dict[str, Any]:
        return {
            "model": MODEL_ALIAS,
            "messages": [
                {"role": "system", "content": "You are a helpful support assistant for an e-bike shop."},
                {"role": "user", "content": question},
            ],
            "max_tokens": 64,
            "temperature": 0,
            **({"prompt_version": prompt_version} if prompt_version else {}),
        }

    bases = [pair[0] for pair in PARAPHRASES + NEAR_MISSES]
    probes = [pair[1] for pair in PARAPHRASES + NEAR_MISSES]
    # Warm-up in its own cache scope (another prompt_version), so it can serve none of the probes.
    warm = [body(f"warm-up question number {i}", "warm-up") for i in range(5)]
    spec = {"host": "127.0.0.1", "port": keel_port, "path": "/v1/chat/completions", "headers": headers}
    result = run_loadgen(
        spec | {"mode": "sequence", "bodies": warm + [body(q) for q in bases] + [body(q) for q in probes]}
    )
    replies = result["replies"][len(warm) :]
    base_replies, probe_replies = replies[: len(bases)], replies[len(bases) :]
    # A guard may refuse a question (a 400 before any model or cache sees it): such pairs are left out.
    refused = sorted(
        {
            f"{question} ({_error_code(reply['text'])})"
            for question, reply in zip(bases + probes, base_replies + probe_replies, strict=True)
            if reply["status"] != 200
        }
    )
    answered = [
        i for i in range(len(bases)) if base_replies[i]["status"] == 200 and probe_replies[i]["status"] == 200
    ]

    def served(reply: dict[str, Any]) -> str | None:
        """The cached base question whose answer came back, if the cache served it."""
        return reply["text"].removeprefix("echo: ") if reply["cache"] not in ("miss", "") else None

    paraphrase_hits = wrong_entry = false_hits = base_false_hits = 0
    details = []
    for i in answered:
        reply = probe_replies[i]
        source = served(reply)
        if i < len(PARAPHRASES) and source is not None:
            if source == bases[i]:
                paraphrase_hits += 1
            else:
                wrong_entry += 1
        elif i >= len(PARAPHRASES) and source is not None:
            false_hits += 1
        base_false_hits += served(base_replies[i]) is not None
        details.append({"probe": probes[i], "base": bases[i], "cache": reply["cache"], "served_from": source})
    paraphrase_pairs = sum(1 for i in answered if i < len(PARAPHRASES))
    near_miss_pairs = len(answered) - paraphrase_pairs

    # Hit latency: the probes that hit, again (exact lookup misses them, the semantic one serves them),
    # and every answered base again (exact hits unless a base was itself answered from another entry).
    hitting = [probes[i] for i in answered if probe_replies[i]["cache"] == "semantic"]
    repeat = run_loadgen(
        spec
        | {
            "mode": "sequence",
            "bodies": [body(q) for q in hitting * HIT_REPEATS + [bases[i] for i in answered]],
        }
    )
    _require_ok("keel semantic repeat", repeat["statuses"])
    by_kind: dict[str, list[float]] = {"semantic": [], "exact": [], "miss": []}
    for reply in [*base_replies, *probe_replies, *repeat["replies"]]:
        if reply["status"] == 200:
            by_kind.setdefault(reply["cache"], []).append(reply["ms"])
    return {
        "threshold": threshold,
        "paraphrase_pairs": paraphrase_pairs,
        "near_miss_pairs": near_miss_pairs,
        "paraphrase_hit_rate": paraphrase_hits / max(1, paraphrase_pairs),
        "paraphrase_wrong_entry": wrong_entry,
        "near_miss_false_hit_rate": false_hits / max(1, near_miss_pairs),
        "base_false_hits": base_false_hits,
        "refused": refused,
        "latency_ms": {kind: latency_stats(values) for kind, values in by_kind.items() if values},
        "details": details,
    }


def _error_code(text: str) -> str:
    try:
        return str(json.loads(text)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return text[:80]


# -- the run -------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="bench", choices=["bench", "loadgen"])
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds, interleaved across the paths (latency and throughput)"
    )
    parser.add_argument("--per-round", type=int, default=60, help="requests per path and round")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15.0, help="throughput window per path")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="the mock upstream's fixed delay")
    parser.add_argument("--litellm", default=None, help="path of the `litellm` executable")
    parser.add_argument("--skip-semantic", action="store_true")
    parser.add_argument(
        "--prompt-only",
        action="store_true",
        help="only direct, Keel and Keel with a prompt reference; results in gateway_overhead_prompt.*",
    )
    args = parser.parse_args()
    args.skip_semantic = args.skip_semantic or args.prompt_only
    if args.mode == "loadgen":
        print(json.dumps(asyncio.run(_loadgen(json.loads(sys.stdin.read())))))
        return

    started = time.perf_counter()
    busy_before, own_before = _machine_busy_seconds(), _own_cpu_seconds()
    load_before = Path("/proc/loadavg").read_text().split()[0]
    data: dict[str, Any] = {
        "settings": {
            "rounds": args.rounds,
            "per_round": args.per_round,
            "warmup": args.warmup,
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "upstream_delay_ms": args.delay_ms,
        }
    }
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        upstream = stack.enter_context(mock_upstream(args.delay_ms))
        targets = [
            Target(
                "direct",
                upstream,
                "/v1/chat/completions",
                {},
                {"model": "mock", "messages": PROMPT, "max_tokens": 64},
            )
        ]
        keel_url, keel_key, keel_process, keel_ready = stack.enter_context(
            keel(keel_toml(upstream), workdir, "keel")
        )
        targets.append(
            Target(
                "keel",
                int(keel_url.rsplit(":", 1)[1]),
                "/v1/chat/completions",
                {"authorization": f"Bearer {keel_key}"},
                {"model": MODEL_ALIAS, "messages": PROMPT, "max_tokens": 64, "cache": False},
                keel_process.pid,
            )
        )
        data["keel_ready_s"] = keel_ready
        targets.append(prompt_target(targets[1]))
        # The same Keel with its guards off, where it has them: what the gateway itself costs.
        guards_off = None if args.prompt_only else guards_off_toml()
        data["keel_guards_off_config"] = guards_off
        if guards_off is not None:
            bare_url, bare_key, bare_process, _ = stack.enter_context(
                keel(keel_toml(upstream, extra=guards_off), workdir, "keel-guards-off")
            )
            targets.append(
                Target(
                    "keel_guards_off",
                    int(bare_url.rsplit(":", 1)[1]),
                    "/v1/chat/completions",
                    {"authorization": f"Bearer {bare_key}"},
                    {"model": MODEL_ALIAS, "messages": PROMPT, "max_tokens": 64, "cache": False},
                    bare_process.pid,
                )
            )
        litellm_binary = None if args.prompt_only else find_litellm(args.litellm)
        litellm_problem: str | None = None
        if args.prompt_only:
            litellm_problem = "not run (`--prompt-only`)"
        elif litellm_binary is None:
            litellm_problem = (
                "no `litellm` executable found (see the module docstring for where it is looked for)"
            )
        else:
            try:
                litellm_port, litellm_process, litellm_ready = stack.enter_context(
                    litellm_proxy(litellm_binary, upstream, workdir)
                )
                targets.append(
                    Target(
                        "litellm",
                        litellm_port,
                        "/v1/chat/completions",
                        {"authorization": f"Bearer {LITELLM_MASTER_KEY}"},
                        {"model": MODEL_ALIAS, "messages": PROMPT, "max_tokens": 64},
                        litellm_process.pid,
                    )
                )
                data["litellm_ready_s"] = litellm_ready
                data["litellm_version"] = _litellm_version(litellm_binary)
            except RuntimeError as exc:
                litellm_problem = f"LiteLLM did not start: {exc}"
        data["litellm_problem"] = litellm_problem
        # /readyz may turn 200 while warm-ups still run in the background: measure a quiet server.
        data["idle_wait_s"] = {t.name: wait_idle(t.pid) for t in targets if t.pid is not None}
        for target in targets:
            check(target)

        questions = customer_questions()
        data["user_messages"] = len(questions)
        raw, data["cpu_ms_per_request_1_in_flight"], data["latency_statuses"] = latency_rounds(
            targets, args.rounds, args.per_round, args.warmup, questions
        )
        data["latency_ms"] = {name: latency_stats(values) for name, values in raw.items()}
        # For scale: Keel answering from its exact cache (the first warm-up request fills it).
        keel_target = targets[1]
        cached_body = {key: value for key, value in keel_target.body.items() if key != "cache"}
        cached = run_loadgen(
            keel_target.spec(mode="latency", warmup=10, count=args.per_round) | {"body": cached_body}
        )
        _require_ok("keel exact cache", cached["statuses"])
        data["keel_exact_hit_ms"] = latency_stats(cached["latencies_ms"])
        data["throughput"] = throughput_rounds(
            targets, args.concurrency, args.seconds, args.rounds, questions
        )
        data["rss_mib"] = {t.name: tree_rss_mib(t.pid) for t in targets if t.pid is not None}
        stack.close()
    direct = data["latency_ms"]["direct"]
    data["added_latency_ms"] = {
        name: {q: stats[q] - direct[q] for q in ("p50", "p95", "p99")}
        for name, stats in data["latency_ms"].items()
        if name != "direct"
    }
    if "litellm" in data["added_latency_ms"]:
        added = data["added_latency_ms"]
        data["keel_to_litellm_added_p50"] = added["keel"]["p50"] / added["litellm"]["p50"]
        if "keel_guards_off" in added:
            data["keel_guards_off_to_litellm_added_p50"] = (
                added["keel_guards_off"]["p50"] / added["litellm"]["p50"]
            )

    if args.prompt_only:
        pass
    elif args.skip_semantic:
        keep_semantic_results(data)
    else:
        data["semantic"] = []
        with tempfile.TemporaryDirectory() as tmp, mock_upstream(0.0, echo=True) as echo_port:
            for threshold in THRESHOLDS:
                config = keel_toml(echo_port, semantic_threshold=threshold)
                with keel(config, Path(tmp), f"semantic-{threshold}") as (url, key, process, _):
                    wait_idle(process.pid)
                    data["semantic"].append(semantic_run(int(url.rsplit(":", 1)[1]), key, threshold))
    data["total_s"] = time.perf_counter() - started
    others = (_machine_busy_seconds() - busy_before) - (_own_cpu_seconds() - own_before)
    cores = len(os.sched_getaffinity(0))
    # What else ran on the machine meanwhile: other work on the same cores makes every number noisier.
    data["noise"] = {
        "load_1min_before": float(load_before),
        "other_processes_cpu_s": others,
        "other_processes_share_of_cores": others / (data["total_s"] * cores),
    }
    write_results("gateway_overhead_prompt" if args.prompt_only else "gateway_overhead", data, report(data))


def prompt_target(keel_target: Target) -> Target:
    """The same Keel and the same messages, rendered from a registry prompt: the request names the prompt
    (a label, and the question as a variable) instead of sending the messages."""
    version = {
        "name": "bench-support",
        "label": "bench",
        "messages": [PROMPT[0], {"role": "user", "content": "{{ question }}"}],
        "variables": {
            "type": "object",
            "required": ["question"],
            "properties": {"question": {"type": "string"}},
        },
    }
    pushed = httpx.post(
        f"http://127.0.0.1:{keel_target.port}/v1/prompts",
        json=version,
        headers=keel_target.headers,
        timeout=60,
    )
    pushed.raise_for_status()
    reference = {"name": "bench-support", "label": "bench", "variables": {"question": PROMPT[1]["content"]}}
    body = {"model": MODEL_ALIAS, "prompt": reference, "max_tokens": 64, "cache": False}
    return Target(
        "keel_prompt", keel_target.port, keel_target.path, keel_target.headers, body, keel_target.pid
    )


def keep_semantic_results(data: dict[str, Any]) -> None:
    """`--skip-semantic` keeps the semantic-cache results of the last run that measured them, dated."""
    earlier_file = RESULTS / "gateway_overhead.json"
    if not earlier_file.is_file():
        return
    earlier = json.loads(earlier_file.read_text())
    if earlier.get("semantic"):
        data["semantic"] = earlier["semantic"]
        data["semantic_measured_at"] = earlier.get("semantic_measured_at", earlier["measured_at"])


def _litellm_version(binary: str) -> str:
    python = Path(binary).parent / "python"
    result = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def _verdicts(data: dict[str, Any]) -> list[str]:
    """Each of issue #18's targets against LiteLLM in the same run, met or not."""
    through = data["throughput"]
    lines = []
    share = data["keel_to_litellm_added_p50"]
    verdict = "met" if share <= TARGET_DEFAULT_SHARE else "NOT met"
    lines.append(
        f"Keel's added p50 (default config) is {share:.2f}x LiteLLM's (target: at most "
        f"{TARGET_DEFAULT_SHARE:g}x) — {verdict}."
    )
    if "keel_guards_off_to_litellm_added_p50" in data:
        bare = data["keel_guards_off_to_litellm_added_p50"]
        verdict = "met" if bare <= TARGET_GUARDS_OFF_SHARE else "NOT met"
        lines.append(
            f"With its guards off: {bare:.2f}x (target: at most {TARGET_GUARDS_OFF_SHARE:g}x) — {verdict}."
        )
    ratio = through["keel"]["requests_per_s"] / through["litellm"]["requests_per_s"]
    clean = through["keel"]["errors"] == 0
    verdict = "met" if ratio >= TARGET_THROUGHPUT_RATIO and clean else "NOT met"
    lines.append(
        f"Keel's requests/s at {data['settings']['concurrency']} in flight (default config) are {ratio:.2f}x "
        f"LiteLLM's with {through['keel']['errors']} errors (target: at least {TARGET_THROUGHPUT_RATIO:g}x, "
        f"no errors) — {verdict}."
    )
    return lines


def report(data: dict[str, Any]) -> str:
    settings = data["settings"]
    latency, through, rss = data["latency_ms"], data["throughput"], data["rss_mib"]
    names = list(latency)
    labels = {
        "direct": "direct to the mock",
        "keel": "Keel (`keel serve`), default config",
        "keel_guards_off": "Keel, guards off",
        "keel_prompt": "Keel, the same messages from a registry prompt reference",
        "litellm": "LiteLLM proxy",
    }
    lines = [
        f"Mock OpenAI-compatible upstream on 127.0.0.1 (fixed completion, delay {settings['upstream_delay_ms']:g} ms); "
        f"load from a separate raw-asyncio client process. Latency: 1 in flight, {settings['rounds']} interleaved rounds "
        f"x {settings['per_round']} requests per path after {settings['warmup']} warm-up. Throughput: {settings['concurrency']} "
        f"in flight for {settings['seconds']:g} s per path, split into the same rounds (2 s warm-up before the first, 1 s before "
        f'the others). Keel bypasses its cache (`"cache": false`).',
        "",
        user_messages_line(data),
        "",
    ]
    if data.get("litellm_problem"):
        lines += [f"**LiteLLM not measured:** {data['litellm_problem']}", ""]
    elif "litellm_version" in data:
        lines += [
            f"LiteLLM {data['litellm_version']} (own venv), `--num_workers 1`, master key, no database.",
            "",
        ]
    lines += [
        "| path | p50 ms | p95 ms | p99 ms | req/s at "
        f"{settings['concurrency']} in flight | p50 / p99 ms under load | errors | proxy CPU ms / request, 1 / {settings['concurrency']} in flight | RSS MiB after |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in names:
        stats, load = latency[name], through[name]
        memory = f"{rss[name]:.0f}" if name in rss else "-"
        single = data["cpu_ms_per_request_1_in_flight"]
        cpu = f"{single[name]:.2f} / {load['cpu_ms_per_request']:.2f}" if name in single else "-"
        lines.append(
            f"| {labels[name]} | {stats['p50']:.2f} | {stats['p95']:.2f} | {stats['p99']:.2f} | "
            f"{load['requests_per_s']:.0f} | {load['p50_ms']:.1f} / {load['p99_ms']:.1f} | {load['errors']} | {cpu} | {memory} |"
        )
    lines += [
        "",
        "Added latency over direct (1 in flight):",
        "",
        "| proxy | p50 ms | p95 ms | p99 ms |",
        "| --- | ---: | ---: | ---: |",
    ]
    added = data["added_latency_ms"]
    for name in names[1:]:
        lines.append(
            f"| {labels[name]} | {added[name]['p50']:.2f} | {added[name]['p95']:.2f} | {added[name]['p99']:.2f} |"
        )
    if "litellm" in added:
        lines += ["", *_verdicts(data)]
    if data.get("keel_guards_off_config"):
        switched = data["keel_guards_off_config"].replace("\n", " ").strip()
        lines += ["", f'"Guards off" is the same Keel with `{switched}` in its keel.toml.']
    if "keel_prompt" in added:
        rendering = {q: added["keel_prompt"][q] - added["keel"][q] for q in ("p50", "p95")}
        lines += [
            "",
            f'Naming a registry prompt instead of sending the messages (`"prompt": {{"name", "label", '
            f'"variables"}}`: label resolution, variable check, sandboxed rendering) adds {rendering["p50"]:.2f} ms '
            f"at p50 and {rendering['p95']:.2f} ms at p95 over the same messages sent directly.",
        ]
    hit = data["keel_exact_hit_ms"]
    lines += [
        "",
        f"Keel answering from its exact cache (no upstream call): p50 {hit['p50']:.2f} ms, "
        f"p95 {hit['p95']:.2f} ms, p99 {hit['p99']:.2f} ms (target: p50 under {TARGET_HIT_MS:g} ms — "
        f"{'met' if hit['p50'] < TARGET_HIT_MS else 'NOT met'}); the client's own round trip is in it.",
        "",
        "Proxy CPU per request: the proxy's process-tree CPU time over the latency (1 in flight) or throughput runs "
        "divided by the requests it answered (2 cores are shared by the client, the proxy and the mock). "
        "RSS is the whole process tree after the load. Keel's includes the embedded chat and embedding models it "
        "loads at start (used by the local deployment and the semantic cache), not needed by this mock path.",
    ]
    if data.get("semantic"):
        lines += [
            "",
            "## Semantic cache",
            "",
            f"One Keel per threshold, `gateway.cache.semantic = true`, an echoing mock; {len(PARAPHRASES)} paraphrase pairs "
            f"and {len(NEAR_MISSES)} near-miss pairs (bench file). All {len(PARAPHRASES) + len(NEAR_MISSES)} base questions "
            "first (misses), then the probes. A paraphrase hit counts only when served from its own base; a near-miss "
            "served from the cache is a false hit; a base question served from another base's entry is one too. "
            f"Hit latency: each probe that hit, {HIT_REPEATS} more times. Rates are over the pairs whose two questions "
            "were both answered (a guard may refuse one with a 400; those are listed below the table)."
            + (
                f" Measured {data['semantic_measured_at']}, kept from that run (this one ran `--skip-semantic`)."
                if "semantic_measured_at" in data
                else ""
            ),
            "",
            "| threshold | paraphrase hit rate (pairs) | near-miss false-hit rate (pairs) | paraphrases served from a wrong entry | "
            "bases served from another entry | semantic hit p50 / p95 ms | exact hit p50 ms | miss p50 ms |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for run in data["semantic"]:
            kinds = run["latency_ms"]
            hit = kinds.get("semantic")
            hit_text = f"{hit['p50']:.2f} / {hit['p95']:.2f} (n={hit['n']})" if hit else "-"
            exact = f"{kinds['exact']['p50']:.2f}" if "exact" in kinds else "-"
            miss = f"{kinds['miss']['p50']:.2f}" if "miss" in kinds else "-"
            lines.append(
                f"| {run['threshold']:.2f} | {run['paraphrase_hit_rate']:.0%} ({run['paraphrase_pairs']}) | "
                f"{run['near_miss_false_hit_rate']:.0%} ({run['near_miss_pairs']}) | "
                f"{run['paraphrase_wrong_entry']} | {run['base_false_hits']} | {hit_text} | {exact} | {miss} |"
            )
        refused = sorted({question for run in data["semantic"] for question in run["refused"]})
        if refused:
            lines += ["", "Refused by Keel (status 400, error code in brackets): " + "; ".join(refused) + "."]
        lines += [
            "",
            "Misses with the semantic cache on include embedding the last user message (all-MiniLM-L6-v2 on CPU).",
        ]
    noise = data["noise"]
    lines += [
        "",
        f"Total run time: {data['total_s']:.0f} s. Other processes on the machine used "
        f"{noise['other_processes_share_of_cores']:.0%} of its cores during the run (1-min load average before: "
        f"{noise['load_1min_before']:.2f}); every number above is noisier the higher that is.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
