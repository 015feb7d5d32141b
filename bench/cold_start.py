"""Cold start and memory: `keel serve` from process start to `/readyz` 200, and its resident memory
with both models loaded (after one chat and one embedding request).

    .venv/bin/python -m bench.cold_start [--runs 3]
"""

from __future__ import annotations

import argparse

import httpx

from bench.harness import live_server, rss_mib, summary, write_results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ready, idle_rss, used_rss = [], [], []
    for _ in range(args.runs):
        with live_server() as server:
            ready.append(server.ready_seconds)
            idle_rss.append(rss_mib(server.process.pid))
            headers = {"Authorization": f"Bearer {server.key}"}
            httpx.post(
                f"{server.base_url}/v1/chat/completions",
                headers=headers,
                timeout=120,
                json={
                    "model": "keel-local",
                    "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 16,
                },
            ).raise_for_status()
            httpx.post(
                f"{server.base_url}/v1/embeddings",
                headers=headers,
                timeout=120,
                json={"model": "keel-embed", "input": ["warm"] * 32},
            ).raise_for_status()
            used_rss.append(rss_mib(server.process.pid))
    ready_stats = summary(ready)
    table = "\n".join(
        [
            f"{args.runs} runs of `keel serve` (SmolLM2-135M Q4_1 + all-MiniLM-L6-v2, SQLite).",
            "",
            "| measure | median | max |",
            "| --- | ---: | ---: |",
            f"| process start → `/readyz` 200 | {ready_stats['median']:.2f} s | {ready_stats['max']:.2f} s |",
            f"| resident memory, models loaded | {summary(idle_rss)['median']:.0f} MiB | {max(idle_rss):.0f} MiB |",
            f"| resident memory, after a chat and 32 embeddings | {summary(used_rss)['median']:.0f} MiB | {max(used_rss):.0f} MiB |",
        ]
    )
    write_results(
        "cold_start",
        {"ready_seconds": ready_stats, "rss_mib_ready": idle_rss, "rss_mib_used": used_rss},
        table,
    )


if __name__ == "__main__":
    main()
