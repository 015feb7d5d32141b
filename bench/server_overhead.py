"""Server overhead around the local model: one prompt through Keel's `/v1/chat/completions` (live
uvicorn, HTTP on 127.0.0.1) versus a direct llama-cpp-python call on the same GGUF, interleaved in one
run. Greedy decoding makes both produce the same tokens. Goal: overhead at most 5 % of model time.

    .venv/bin/python -m bench.server_overhead [--rounds 20]
"""

from __future__ import annotations

import argparse
import os
import time

import httpx
from llama_cpp import Llama

from bench.harness import live_server, summary, write_results
from keel.config import packaged_chat_model

MESSAGES = [
    {"role": "system", "content": "You are a helpful support assistant for an e-bike shop."},
    {
        "role": "user",
        "content": "How long does a full charge of the battery take, and how should I store it?",
    },
]
MAX_TOKENS = 48


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()

    threads = len(os.sched_getaffinity(0))
    direct_model = Llama(model_path=str(packaged_chat_model()), n_ctx=4096, n_threads=threads, verbose=False)
    sampling = {"max_tokens": MAX_TOKENS, "temperature": 0.0, "top_p": 0.95, "repeat_penalty": 1.1, "seed": 1}

    def direct() -> tuple[float, int]:
        started = time.perf_counter()
        result = direct_model.create_chat_completion(messages=MESSAGES, **sampling)
        return time.perf_counter() - started, result["usage"]["completion_tokens"]

    with live_server() as server, httpx.Client(timeout=120) as http:
        headers = {"Authorization": f"Bearer {server.key}"}
        body = {"model": "keel-local", "messages": MESSAGES, **sampling}

        def through_keel() -> tuple[float, int]:
            started = time.perf_counter()
            response = http.post(f"{server.base_url}/v1/chat/completions", json=body, headers=headers)
            response.raise_for_status()
            return time.perf_counter() - started, response.json()["usage"]["completion_tokens"]

        direct(), through_keel()  # warm both: page cache, llama prefix state
        direct_times, keel_times, tokens = [], [], set()
        for _ in range(args.rounds):
            for measure, sink in ((direct, direct_times), (through_keel, keel_times)):
                seconds, completion_tokens = measure()
                sink.append(seconds * 1000)
                tokens.add(completion_tokens)

    direct_stats, keel_stats = summary(direct_times), summary(keel_times)
    overhead_ms = keel_stats["median"] - direct_stats["median"]
    ratio = overhead_ms / direct_stats["median"]
    table = "\n".join(
        [
            f"Prompt: {len(MESSAGES)} messages, max_tokens={MAX_TOKENS}, greedy; completion tokens seen: {sorted(tokens)}; "
            f"{args.rounds} interleaved rounds.",
            "",
            "| path | median ms | p95 ms |",
            "| --- | ---: | ---: |",
            f"| llama-cpp-python, direct | {direct_stats['median']:.1f} | {direct_stats['p95']:.1f} |",
            f"| Keel `/v1/chat/completions` over HTTP | {keel_stats['median']:.1f} | {keel_stats['p95']:.1f} |",
            "",
            f"Overhead (median): {overhead_ms:.1f} ms = {ratio * 100:.1f} % of the direct model time (goal: at most 5 %).",
        ]
    )
    write_results(
        "server_overhead",
        {
            "direct_ms": direct_stats,
            "keel_ms": keel_stats,
            "overhead_ms": overhead_ms,
            "overhead_ratio": ratio,
            "completion_tokens": sorted(tokens),
            "rounds": args.rounds,
        },
        table,
    )


if __name__ == "__main__":
    main()
