"""What storing traces costs a request: the same requests to `keel serve` with the database span
exporter on and off, in one run, plus how long the queued spans take to land.

    .venv/bin/python -m bench.trace_overhead [--requests 1000]
"""

from __future__ import annotations

import argparse
import time

import httpx

from bench.harness import live_server, summary, write_results


def measure(extra_env: dict[str, str], requests: int) -> dict[str, float]:
    with live_server(extra_env) as server, httpx.Client(base_url=server.base_url, timeout=30) as client:
        headers = {"Authorization": f"Bearer {server.key}"}
        for _ in range(50):  # warm-up
            client.get("/v1/models", headers=headers)
        latencies = []
        for _ in range(requests):
            started = time.perf_counter()
            client.get("/v1/models", headers=headers).raise_for_status()
            latencies.append((time.perf_counter() - started) * 1000)
        return summary(latencies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    off = measure({"KEEL_OBSERVE__STORE_TRACES": "false"}, args.requests)
    on = measure({"KEEL_OBSERVE__STORE_TRACES": "true"}, args.requests)
    table = "\n".join(
        [
            f"{args.requests} sequential `GET /v1/models` requests per setting (auth, routing, a root span, metrics).",
            "",
            "| spans stored in the database | p50 ms | p95 ms |",
            "| --- | ---: | ---: |",
            f"| off | {off['median']:.2f} | {off['p95']:.2f} |",
            f"| on (batch exporter, bounded queue) | {on['median']:.2f} | {on['p95']:.2f} |",
            "",
            f"Added by storing traces: p50 {on['median'] - off['median']:+.2f} ms, p95 {on['p95'] - off['p95']:+.2f} ms.",
        ]
    )
    write_results(
        "trace_overhead", {"store_off_ms": off, "store_on_ms": on, "requests": args.requests}, table
    )


if __name__ == "__main__":
    main()
