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
3. The load comes from a separate process (this bench's `loadgen` mode: a raw asyncio HTTP/1.1
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

# The parts, one job each: constants (shared settings), loadgen (the keep-alive client and its process),
# servers (the mock upstream, `keel serve`), litellm (LiteLLM's proxy), paths (the timed paths of a run),
# processes (CPU time, memory, a quiet server), rounds (latency and throughput), semantic (the semantic
# cache), report (the Markdown), run (the command line and the run). `python -m` runs __main__.

from bench.gateway_overhead.constants import MODEL_ALIAS, PROMPT
from bench.gateway_overhead.loadgen import Connection, Reply, run_loadgen
from bench.gateway_overhead.paths import Target
from bench.gateway_overhead.processes import tree_rss_mib, wait_idle
from bench.gateway_overhead.servers import guards_off_toml, keel, keel_toml, mock_upstream

__all__ = [
    "MODEL_ALIAS",
    "PROMPT",
    "Connection",
    "Reply",
    "Target",
    "guards_off_toml",
    "keel",
    "keel_toml",
    "mock_upstream",
    "run_loadgen",
    "tree_rss_mib",
    "wait_idle",
]
