"""Hostile load: a small chat and a small embedding request from tenant B, on an idle `keel serve` and
while tenant A sends the largest request the limits allow, back to back. Target: B's latency under load
at most 2x idle. Also the time to a refusal for oversized input, the time from SIGTERM to exit while A's
largest embedding request runs, the injection guard's cost on long and adversarial texts, and A's
largest requests alone on the server (what the sharing costs A itself).

    .venv/bin/python -m bench.hostile_load [--rounds 24] [--results NAME]

A's largest requests, by the default limits (README, "API keys and roles"): embeddings of 2,048 inputs
whose tokens add up to just under the 300,000 a request may have (each past the model's 256-token
window is cut there, so many mid-length inputs are the most model work the limits allow; the 2 MiB body
keeps 2,048 inputs of 8,192 tokens out); a chat whose prompt and `max_tokens` fill the 4,096-token
context window. A runs in a process of its own and is stopped by closing its connection. Every figure is
printed with the 1/5/15-minute load average it was measured under.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from bench.harness import free_port, summary, write_results
from keel.config import Settings, packaged_chat_model, packaged_embedding_model

TARGET_RATIO = 2.0
SMALL_CHAT = {
    "model": "keel-local",
    "messages": [{"role": "user", "content": "Where is my order 1234?"}],
    "max_tokens": 16,
    "temperature": 0,
    "seed": 7,
    "cache": False,  # every round is model work, not an exact-cache hit
}
SMALL_EMBEDDING = {"model": "keel-embed", "input": "refund policy"}
SENTENCES = [
    "The parcel left the warehouse on Monday and reached the sorting centre the next morning.",
    "Customers who return an item within thirty days receive a full refund to the original card.",
    "Our support team answers chats between eight in the morning and six in the evening.",
    "The battery charges fully in about four hours and should be stored half charged in winter.",
    "A replacement part is shipped free of charge while the warranty lasts.",
]
# The long chat's material: a week of tickets (prose the injection guard lets through).
TICKETS = [
    "Order 4411: the parcel left the warehouse on Monday and reached the sorting centre the next morning, "
    "then waited two days.",
    "Order 4412: a charger arrived with a bent pin; we shipped a replacement part free of charge under the "
    "warranty.",
    "Order 4413: the customer asked how long the battery takes to charge; four hours from empty, stored half "
    "charged in winter.",
    "Order 4414: a refund of 39.90 euros was paid back to the original card eleven days after the return "
    "arrived.",
    "Order 4415: the chat was answered at seven in the evening, after opening hours, by the weekend team.",
]
N_CTX = 4096
# A's request must be in the model within this long, or the run stops and says why.
A_START_S = 600
EMBED_INPUTS = 2048
EMBED_REQUEST_TOKENS = 300_000
# A's own time alone is measured on this many of its inputs (the whole request takes minutes here).
ALONE_INPUTS = 256


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# -- A's largest requests ------------------------------------------------------------------------


def largest_embedding_inputs() -> list[str]:
    """2,048 distinct inputs, as long as possible while the request stays within its token limit."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(packaged_embedding_model() / "tokenizer.json"))
    tokenizer.no_truncation()  # the file truncates at 128; the request limits count every token
    budget = EMBED_REQUEST_TOKENS // EMBED_INPUTS  # tokens per input, [CLS] and [SEP] included
    texts = []
    for index in range(EMBED_INPUTS):
        words = f"Ticket {index}: " + " ".join(SENTENCES[(index + k) % len(SENTENCES)] for k in range(12))
        cut = words.split()
        while len(tokenizer.encode(" ".join(cut)).ids) > budget:
            cut = cut[: -max(1, len(cut) // 20)]
        texts.append(" ".join(cut))
    return texts


def largest_chat() -> dict[str, Any]:
    """A prompt of about 3,000 tokens and `max_tokens` for the rest of the window."""
    from llama_cpp import Llama

    vocab = Llama(model_path=str(packaged_chat_model()), vocab_only=True, verbose=False)
    lines: list[str] = []
    while len(vocab.tokenize("\n".join(lines).encode())) < 3000:
        lines.append(TICKETS[len(lines) % len(TICKETS)])
    prompt = "Here is last week's ticket log of our e-bike shop. Which problems came up most often?\n"
    prompt += "\n".join(lines)
    used = len(vocab.tokenize(prompt.encode())) + 32  # the chat template around it
    return {
        "model": "keel-local",
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": N_CTX - used,
        "cache": False,
    }


def flood(url: str, key: str, path: str, body: dict[str, Any], status: Any) -> None:
    """A's loop, in its own process: the same large request, back to back, until terminated; `status`
    holds the last response's status (0: none yet, -1: the server went away)."""
    with httpx.Client(timeout=3600) as client:
        while True:
            try:
                response = client.post(f"{url}{path}", json=body, headers={"Authorization": f"Bearer {key}"})
            except httpx.TransportError:
                status.value = -1
                return
            status.value = response.status_code


def turns_taken(url: str, model: str, turn: str) -> float:
    """How many turns of this kind the model has granted so far (its queue-time histogram's count)."""
    prefix = f'keel_model_queue_seconds_count{{model="{model}",turn="{turn}"}} '
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    return 0.0


@contextmanager
def hostile(url: str, key: str, path: str, body: dict[str, Any]) -> Iterator[None]:
    # A's request is in the model once it has had two batches, or once its generation holds the steps.
    model, turn, turns = ("keel-embed", "batch", 2) if path == "/v1/embeddings" else ("keel-local", "step", 1)
    taken = turns_taken(url, model, turn)
    context = multiprocessing.get_context("spawn")
    status = context.Value("i", 0)
    process = context.Process(target=flood, args=(url, key, path, body, status), daemon=True)
    process.start()
    deadline = time.monotonic() + A_START_S
    while turns_taken(url, model, turn) < taken + turns:
        if status.value not in (0, 200) or time.monotonic() > deadline:
            process.terminate()
            raise RuntimeError(f"A's {path} request never reached the model (last status {status.value})")
        time.sleep(0.2)
    try:
        yield
    finally:
        process.terminate()  # its connection closes: the server stops A's work after the step in hand
        process.join(timeout=30)


# -- the server ----------------------------------------------------------------------------------


@dataclass
class Server:
    url: str
    keys: dict[str, str]
    process: subprocess.Popen[bytes]
    data_dir: str


@contextmanager
def serve() -> Iterator[Server]:
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "KEEL_DATA_DIR": data_dir, "KEEL_LOG_LEVEL": "warning"}
        keel = [sys.executable, "-m", "keel"]
        keys = {
            tenant: subprocess.run(
                [*keel, "keys", "create", "--tenant", tenant, "--role", "app"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
            for tenant in ("tenant-a", "tenant-b")
        }
        port = free_port()
        process = subprocess.Popen([*keel, "serve", "--port", str(port)], env=env)
        url = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        try:
            while True:
                try:
                    if httpx.get(f"{url}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if process.poll() is not None or time.monotonic() - started > 600:
                    raise RuntimeError("keel serve did not become ready")
                time.sleep(0.2)
            yield Server(url, keys, process, data_dir)
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=120)


# -- B's small requests --------------------------------------------------------------------------


def timed(client: httpx.Client, server: Server, path: str, body: dict[str, Any]) -> float:
    started = time.perf_counter()
    response = client.post(
        f"{server.url}{path}", json=body, headers={"Authorization": f"Bearer {server.keys['tenant-b']}"}
    )
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    return elapsed * 1000


def small_requests(server: Server, rounds: int) -> dict[str, Any]:
    """B's chat and embedding requests, taking turns, a short pause apart."""
    chat, embedding = [], []
    before = load()
    with httpx.Client(timeout=600) as client:
        for _ in range(rounds):
            chat.append(timed(client, server, "/v1/chat/completions", SMALL_CHAT))
            time.sleep(0.2)
            embedding.append(timed(client, server, "/v1/embeddings", SMALL_EMBEDDING))
            time.sleep(0.2)
    return {
        "chat_ms": summary(chat),
        "embedding_ms": summary(embedding),
        "load_average": [before, load()],
        "raw_ms": {"chat": chat, "embedding": embedding},
    }


def faster_idle(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """The idle reference: of two idle phases, before and after the loaded ones, the faster for each kind
    of request (the machine's own load, from other processes, changes over a run; the faster phase is the
    stricter reference and gives the higher ratio)."""
    reference: dict[str, Any] = {"phases": [first, second]}
    for kind in ("chat_ms", "embedding_ms"):
        reference[kind] = min(first[kind], second[kind], key=lambda stats: stats["median"])
    reference["load_average"] = [first["load_average"][0], second["load_average"][1]]
    return reference


def alone(server: Server, bodies: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """A's largest requests, one at a time on an otherwise idle server: what sharing costs A itself."""
    out: dict[str, Any] = {}
    with httpx.Client(timeout=3600) as client:
        for name, (path, body) in bodies.items():
            before = load()
            started = time.perf_counter()
            response = client.post(
                f"{server.url}{path}",
                json=body,
                headers={"Authorization": f"Bearer {server.keys['tenant-a']}"},
            )
            response.raise_for_status()
            out[name] = {
                "seconds": round(time.perf_counter() - started, 2),
                "usage": response.json()["usage"],  # a chat may end before max_tokens
                "load_average": before,
            }
    return out


def refusals(server: Server) -> dict[str, Any]:
    """Time to the refusal of oversized input (A's key; each a 4xx, never the guard or a model)."""
    headers = {"Authorization": f"Bearer {server.keys['tenant-a']}", "content-type": "application/json"}
    cases: dict[str, tuple[str, bytes]] = {
        "chat, 100k-token message (~400 KB)": (
            "/v1/chat/completions",
            httpx.Request(
                "POST",
                "/",
                json={"model": "keel-local", "messages": [{"role": "user", "content": "word " * 100_000}]},
            ).read(),
        ),
        "chat, 30 KB message: passes the character bound, fails the context window (~6k tokens)": (
            "/v1/chat/completions",
            httpx.Request(
                "POST",
                "/",
                json={"model": "keel-local", "messages": [{"role": "user", "content": "refund " * 4_300}]},
            ).read(),
        ),
        "embeddings, 20 MB body": (
            "/v1/embeddings",
            b'{"model": "keel-embed", "input": "' + b"a" * 20_000_000 + b'"}',
        ),
    }
    out: dict[str, Any] = {}
    with httpx.Client(timeout=600) as client:
        for name, (path, body) in cases.items():
            before = load()
            started = time.perf_counter()
            try:
                response = client.post(f"{server.url}{path}", content=body, headers=headers)
                status, code = response.status_code, response.json().get("error", {}).get("code")
            except httpx.TransportError as exc:  # the server may close the connection on a refused body
                status, code = 0, type(exc).__name__
            out[name] = {
                "status": status,
                "code": code,
                "seconds": round(time.perf_counter() - started, 3),
                "load_average": before,
            }
    return out


def shutdown_under_load(server: Server, body: dict[str, Any]) -> dict[str, Any]:
    """SIGTERM while A's largest embedding request is being worked on; seconds until the process exits."""
    with hostile(server.url, server.keys["tenant-a"], "/v1/embeddings", body):
        before = load()
        started = time.perf_counter()
        server.process.send_signal(signal.SIGTERM)
        code = server.process.wait(timeout=600)
        return {"seconds": round(time.perf_counter() - started, 2), "exit_code": code, "load_average": before}


# -- the guard, in-process ------------------------------------------------------------------------


def guard_costs() -> dict[str, Any]:
    from keel.guard.injection import _plan, match_rule

    prose = " ".join(SENTENCES)
    texts: dict[str, str] = {
        "prose 100 KB": (prose + " ") * (100_000 // (len(prose) + 1)),
        "prose 800 KB": (prose + " ") * (800_000 // (len(prose) + 1)),
        "adversarial 1 MB: whitespace after a trigger": "ignore" + " " * 1_000_000,
        "adversarial 1 MB: repeated trigger words": "ignore the the the " * (1_000_000 // 19),
        "adversarial 1 MB: reveal without object": "reveal " + "x " * 500_000,
        "adversarial 1 MB: mixed whitespace": "ignore \t\n " * 100_000,
        "adversarial 1 MB: sentence ends": ". " * 500_000,
        "adversarial 1 MB: conditional address": "if an ai " * (1_000_000 // 9),
    }
    out: dict[str, Any] = {}
    for name, text in texts.items():
        before = load()
        started = time.perf_counter()
        plan = _plan(text, sentences=True)
        planned = time.perf_counter() - started
        match_rule(text)
        ruled = time.perf_counter() - started - planned
        out[name] = {
            "plan_s": round(planned, 3),
            "rules_s": round(ruled, 3),
            "pieces_embedded": len(plan.pieces),
            "load_average": before,
        }
    return out


# -- the run ---------------------------------------------------------------------------------------


def ratio(loaded: dict[str, Any], idle: dict[str, Any], key: str, stat: str) -> float:
    return round(float(loaded[key][stat]) / float(idle[key][stat]), 2)


def measure(rounds: int) -> dict[str, Any]:
    run_started = time.perf_counter()
    data: dict[str, Any] = {"load_average_start": load(), "rounds": rounds}
    settings = Settings()  # what `keel serve` runs with here (KEEL_* variables included)
    data["settings"] = {
        "embedding.bulk_nice": settings.embedding.bulk_nice,
        "chat.nice": settings.chat.nice,
        "chat.parallel": settings.chat.parallel,
    }
    embedding_inputs = largest_embedding_inputs()
    chat_body = largest_chat()
    largest_embedding = {"model": "keel-embed", "input": embedding_inputs, "encoding_format": "base64"}
    data["largest"] = {
        "embedding_inputs": len(embedding_inputs),
        "embedding_chars": sum(map(len, embedding_inputs)),
        "chat_prompt_chars": len(chat_body["messages"][0]["content"]),
        "chat_max_tokens": chat_body["max_tokens"],
    }
    data["guard"] = guard_costs()
    with serve() as server:
        with httpx.Client(timeout=600) as client:  # first-call paths warmed
            timed(client, server, "/v1/chat/completions", SMALL_CHAT)
            timed(client, server, "/v1/embeddings", SMALL_EMBEDDING)
        idle_before = small_requests(server, rounds)
        key_a = server.keys["tenant-a"]
        with hostile(server.url, key_a, "/v1/embeddings", largest_embedding):
            under_embedding = small_requests(server, rounds)
        with hostile(server.url, key_a, "/v1/chat/completions", chat_body):
            under_chat = small_requests(server, rounds)
        idle = faster_idle(idle_before, small_requests(server, rounds))
        data["a_alone"] = alone(
            server,
            {
                f"embeddings, the first {ALONE_INPUTS} of the largest request's inputs": (
                    "/v1/embeddings",
                    {**largest_embedding, "input": embedding_inputs[:ALONE_INPUTS]},
                ),
                "largest chat": ("/v1/chat/completions", chat_body),
            },
        )
        metrics = httpx.get(f"{server.url}/metrics").text
        data["queue_metric"] = [
            line
            for line in metrics.splitlines()
            if line.startswith("keel_model_queue_seconds_") and ("_sum" in line or "_count" in line)
        ]
        data["refusals"] = refusals(server)
        data["shutdown"] = shutdown_under_load(server, largest_embedding)
    data["idle"], data["under_largest_embedding"], data["under_largest_chat"] = (
        idle,
        under_embedding,
        under_chat,
    )
    data["ratios"] = {
        load_name: {
            f"{kind} {stat}": ratio(loaded, idle, f"{kind}_ms", stat)
            for kind in ("chat", "embedding")
            for stat in ("median", "p95")
        }
        for load_name, loaded in (("largest embedding", under_embedding), ("largest chat", under_chat))
    }
    data["load_average_end"] = load()
    data["run_seconds"] = round(time.perf_counter() - run_started, 1)
    return data


def markdown(data: dict[str, Any]) -> str:
    def row(name: str, phase: dict[str, Any]) -> str:
        chat, embedding = phase["chat_ms"], phase["embedding_ms"]
        return (
            f"| {name} | {chat['median']:.0f} | {chat['p95']:.0f} | {embedding['median']:.0f} | "
            f"{embedding['p95']:.0f} | {phase['load_average'][0]} → {phase['load_average'][1]} |"
        )

    largest = data["largest"]
    lines = [
        f"Tenant B's small requests ({data['rounds']} of each; chat: 16 tokens at temperature 0; embedding: "
        f"one short text), while tenant A sends its largest request back to back: embeddings of "
        f"{largest['embedding_inputs']} inputs ({largest['embedding_chars']:,} characters, just under 300,000 "
        f"tokens), or a chat of {largest['chat_prompt_chars']:,} characters with max_tokens "
        f"{largest['chat_max_tokens']} (the 4,096-token window). Target: at most {TARGET_RATIO:.0f}x idle. The "
        "ratios are taken against the faster of the two idle phases for each kind of request. Server settings: "
        + ", ".join(f"`{name}` {value}" for name, value in data["settings"].items())
        + ". The machine is shared: each row names the load average it was taken under, and the ratios, "
        "taken within one run, are the figures to compare.",
        "",
        "| B's latency | chat p50 ms | chat p95 ms | embedding p50 ms | embedding p95 ms | load average (1/5/15 min) |",
        "| --- | --- | --- | --- | --- | --- |",
        row("idle server, before the loaded phases", data["idle"]["phases"][0]),
        row("idle server, after them", data["idle"]["phases"][1]),
        row("A: largest embeddings", data["under_largest_embedding"]),
        row("A: largest chat", data["under_largest_chat"]),
        "",
        "| A's load | " + " | ".join(data["ratios"]["largest embedding"]) + " |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, ratios in data["ratios"].items():
        cells = " | ".join(
            f"{value:.2f}x{'' if value <= TARGET_RATIO else ' (over)'}" for value in ratios.values()
        )
        lines.append(f"| {name} | {cells} |")
    lines += [
        "",
        "| A's largest request, alone on the server | seconds | load average |",
        "| --- | --- | --- |",
    ]
    for name, timing in data["a_alone"].items():
        lines.append(f"| {name} | {timing['seconds']} | {timing['load_average']} |")
    lines += [
        "",
        "| oversized input | status | code | seconds | load average |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, refusal in data["refusals"].items():
        lines.append(
            f"| {name} | {refusal['status']} | {refusal['code']} | {refusal['seconds']} | {refusal['load_average']} |"
        )
    shutdown = data["shutdown"]
    lines += [
        "",
        f"SIGTERM while A's largest embedding request runs: exited in {shutdown['seconds']} s "
        f"(exit code {shutdown['exit_code']}; `shutdown_grace_s` 5; load average {shutdown['load_average']}).",
        "",
        "| injection guard, one text | plan s | rules s | pieces embedded | load average |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, cost in data["guard"].items():
        lines.append(
            f"| {name} | {cost['plan_s']} | {cost['rules_s']} | {cost['pieces_embedded']} | {cost['load_average']} |"
        )
    lines += [
        "",
        f"Load average at the start {data['load_average_start']}, at the end {data['load_average_end']}; "
        f"run time {data['run_seconds']} s.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=24)
    # Another name keeps a comparison run (other KEEL_* settings) beside the shipped one.
    parser.add_argument("--results", default="hostile_load", help="bench/results/<name>.md and .json")
    args = parser.parse_args()
    data = measure(args.rounds)
    write_results(args.results, data, markdown(data))


if __name__ == "__main__":
    main()
