"""Query latency of Keel's embedded index (SQLite FTS5 BM25 + exact numpy cosine) at 10k and 100k chunks,
next to LanceDB (exact and ANN vector search, native full-text search) and bm25s on the same data.

    .venv/bin/python -m bench.retrieval_scale [--sizes 10000,100000] [--queries 200]

The corpus is synthetic, because scale is what is measured, not relevance: each chunk is 60-120 words
drawn from a Zipf-distributed vocabulary of 30k pseudo-words, with a random unit float32 vector of 384
dimensions (MiniLM-L6's width); everything comes from seeded generators, so every run sees the same data.
Keyword queries are 3-6 words drawn from the same distribution minus its 100 most frequent words (in real
text that head is mostly stopwords, which Keel drops); vector queries are random unit vectors.

Keel is measured through its own index code: a `Database` on a temporary SQLite file, migrated, with
`SqliteIndex.add` writing 5,000 chunks per transaction, then `keyword_search` / `vector_search` called
directly (no HTTP, no query embedding, no hydration of chunk rows). Hybrid is keyword + vector +
`weighted_fusion`, timed as a whole. Every retriever, peers included, is asked for `candidates` hits
(100, what Keel's Retriever asks its index for in every mode); hybrid keeps the fused top k=10.
Each mode gets one untimed warm-up query; Keel's first vector search, which loads the tenant's matrix
from SQLite, is reported as the matrix load time.

A second table splits Keel's latency into parts (raw sqlite3 with the same SQL, the same match without the
tenant filter, bare numpy over the same matrix) to show where the time goes. Peers need the `bench`
extra (lancedb, bm25s); a missing peer is skipped, not fatal.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import text
from threadpoolctl import threadpool_limits

from bench.harness import summary, write_results
from keel.config import RetrievalSettings
from keel.knowledge.fusion import weighted_fusion
from keel.knowledge.index.base import IndexEntry, SearchScope
from keel.knowledge.index.sqlite import SqliteIndex, keyword_query
from keel.store.engine import Database

TENANT = "scale"
SCOPE = SearchScope(tenant=TENANT)
DIM = 384
VOCABULARY = 30_000
ZIPF_EXPONENT = 1.0
QUERY_SKIPS_HEAD = 100
BATCH = 5_000
K = 10
CANDIDATES = RetrievalSettings().candidates
KEYWORD_WEIGHT = RetrievalSettings().keyword_weight
CHUNKS_PER_DOCUMENT = 4
# Each peer index build is skipped at sizes where it would blow the run's time budget on 2 cores.
HNSW_MAX_CHUNKS = 100_000

Vectors = npt.NDArray[np.float32]


@dataclass
class Corpus:
    chunk_ids: list[str]
    texts: list[str]
    vectors: Vectors


@dataclass
class Queries:
    keyword: list[str]
    vector: Vectors


def pseudo_words(rng: np.random.Generator, count: int) -> list[str]:
    # Five letters or more: no collision with Keel's stopword list, whose longest word has four.
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words: dict[str, None] = {}
    while len(words) < count:
        length = int(rng.integers(5, 11))
        words["".join(rng.choice(letters, length))] = None
    return list(words)


def zipf_probabilities(count: int) -> npt.NDArray[np.float64]:
    weights = 1.0 / np.arange(1, count + 1, dtype=np.float64) ** ZIPF_EXPONENT
    return weights / weights.sum()


def make_corpus(size: int, queries: int, seed: int = 7) -> tuple[Corpus, Queries]:
    rng = np.random.default_rng(seed)
    vocabulary = pseudo_words(rng, VOCABULARY)
    probabilities = zipf_probabilities(VOCABULARY)
    lengths = rng.integers(60, 121, size)
    words = rng.choice(VOCABULARY, size=int(lengths.sum()), p=probabilities)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    texts = [" ".join(vocabulary[w] for w in words[offsets[i] : offsets[i + 1]]) for i in range(size)]
    vectors = rng.standard_normal((size, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunk_ids = [f"chk_{rng.bytes(12).hex()}" for _ in range(size)]  # random like Keel's uuid4 ids

    query_rng = np.random.default_rng(seed + 1)
    tail = probabilities[QUERY_SKIPS_HEAD:] / probabilities[QUERY_SKIPS_HEAD:].sum()
    keyword = [
        " ".join(
            vocabulary[QUERY_SKIPS_HEAD + w]
            for w in query_rng.choice(len(tail), int(query_rng.integers(3, 7)), p=tail)
        )
        for _ in range(queries + 1)
    ]
    vector = query_rng.standard_normal((queries + 1, DIM), dtype=np.float32)
    vector /= np.linalg.norm(vector, axis=1, keepdims=True)
    return Corpus(chunk_ids, texts, vectors), Queries(keyword, vector)


def timed(run: Callable[[Any], object], inputs: Sequence[Any]) -> list[float]:
    """Milliseconds per call; the first input is an untimed warm-up."""
    run(inputs[0])
    latencies = []
    for item in inputs[1:]:
        started = time.perf_counter()
        run(item)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def exact_top(vectors: Vectors, queries: Vectors, k: int) -> list[set[int]]:
    return [set(np.argpartition(-(vectors @ q), k - 1)[:k].tolist()) for q in queries]


def recall(found: list[set[int]], truth: list[set[int]]) -> float:
    return statistics.fmean(len(f & t) / len(t) for f, t in zip(found, truth, strict=True))


Row = dict[str, Any]


def row(name: str, latencies: list[float], **extra: Any) -> Row:
    return {"name": name, "latency_ms": summary(latencies), **extra}


# -- Keel ---------------------------------------------------------------------------------------------


def bench_keel(
    directory: Path, corpus: Corpus, queries: Queries, truth: list[set[int]]
) -> tuple[list[Row], list[Row], dict[str, float]]:
    path = directory / "keel.db"
    database = Database(f"sqlite:///{path}")
    database.migrate()
    index = SqliteIndex(database)
    index.ensure_schema()

    started = time.perf_counter()
    for start in range(0, len(corpus.texts), BATCH):
        entries = [
            IndexEntry(
                chunk_id=corpus.chunk_ids[i],
                document_id=f"doc_{i // CHUNKS_PER_DOCUMENT:024d}",
                tenant=TENANT,
                doc_type="text",
                source=f"synthetic/{i // CHUNKS_PER_DOCUMENT}.txt",
                acl=[],
                text=corpus.texts[i],
                vector=corpus.vectors[i],
            )
            for i in range(start, min(start + BATCH, len(corpus.texts)))
        ]
        with database.session() as session:
            index.add(session, entries)
    build_s = time.perf_counter() - started

    started = time.perf_counter()
    index.vector_search(queries.vector[0], SCOPE, CANDIDATES)
    load_ms = (time.perf_counter() - started) * 1000

    def hybrid(item: tuple[str, Vectors]) -> object:
        ranked = {
            "keyword": index.keyword_search(item[0], SCOPE, CANDIDATES),
            "vector": index.vector_search(item[1], SCOPE, CANDIDATES),
        }
        return weighted_fusion(ranked, {"keyword": KEYWORD_WEIGHT, "vector": 1 - KEYWORD_WEIGHT})[:K]

    position = {chunk_id: i for i, chunk_id in enumerate(corpus.chunk_ids)}
    found = [{position[h.chunk_id] for h in index.vector_search(q, SCOPE, K)} for q in queries.vector[1:]]
    rows = [
        row("keyword", timed(lambda q: index.keyword_search(q, SCOPE, CANDIDATES), queries.keyword)),
        row(
            "vector, exact",
            timed(lambda v: index.vector_search(v, SCOPE, CANDIDATES), queries.vector),
            recall_at_10=recall(found, truth),
        ),
        row(
            "hybrid (weighted fusion)", timed(hybrid, list(zip(queries.keyword, queries.vector, strict=True)))
        ),
    ]
    parts = keel_parts(database, path, corpus, queries)
    # OpenBLAS spreads one matrix-vector product over every core; on a busy 2-core box waking the
    # second thread can cost more than the product itself.
    with threadpool_limits(limits=1, user_api="blas"):
        parts += [
            row(
                "vector: Keel's vector_search, BLAS on 1 thread",
                timed(lambda v: index.vector_search(v, SCOPE, CANDIDATES), queries.vector),
            ),
            row(
                "hybrid: Keel's path, BLAS on 1 thread",
                timed(hybrid, list(zip(queries.keyword, queries.vector, strict=True))),
            ),
        ]
    database.dispose()
    return rows, parts, {"build_s": build_s, "matrix_load_ms": load_ms, "db_mib": path.stat().st_size / 2**20}


def keel_parts(database: Database, path: Path, corpus: Corpus, queries: Queries) -> list[Row]:
    """The same work as Keel's searches without Keel's layers, to show which part costs what."""
    connection = sqlite3.connect(path)
    matches = [keyword_query(q) for q in queries.keyword]
    with_tenant = (
        "SELECT chunk_id, -bm25(chunk_fts) AS score FROM chunk_fts WHERE chunk_fts MATCH ? AND tenant = ? "
        "ORDER BY bm25(chunk_fts) LIMIT ?"
    )
    # Without the tenant filter and chunk_id FTS5 never reads a content row: doclists and bm25 only.
    no_tenant = (
        "SELECT rowid, -bm25(chunk_fts) AS score FROM chunk_fts WHERE chunk_fts MATCH ? "
        "ORDER BY bm25(chunk_fts) LIMIT ?"
    )
    counts = [
        connection.execute("SELECT count(*) FROM chunk_fts WHERE chunk_fts MATCH ?", (m,)).fetchone()[0]
        for m in matches[1:]
    ]
    rows = [
        row(
            "keyword: raw sqlite3, same SQL",
            timed(lambda m: connection.execute(with_tenant, (m, TENANT, CANDIDATES)).fetchall(), matches),
            mean_matching_chunks=statistics.fmean(counts),
        ),
        row(
            "keyword: raw sqlite3, rowid only, no tenant filter",
            timed(lambda m: connection.execute(no_tenant, (m, CANDIDATES)).fetchall(), matches),
        ),
        row(
            "keyword: count(*) of matching chunks only",
            timed(
                lambda m: connection.execute(
                    "SELECT count(*) FROM chunk_fts WHERE chunk_fts MATCH ?", (m,)
                ).fetchone(),
                matches,
            ),
        ),
    ]
    connection.close()

    def generation_check(_: object) -> object:
        with database.session() as session:
            return session.execute(
                text("SELECT generation FROM index_generation WHERE tenant = :t"), {"t": TENANT}
            ).scalar()

    matrix = np.ascontiguousarray(corpus.vectors)
    everything = np.arange(len(matrix))

    def numpy_top(q: Vectors) -> object:
        scores = matrix @ q
        best = np.argpartition(-scores, CANDIDATES - 1)[:CANDIDATES]
        return best[np.argsort(-scores[best])]

    rows += [
        row("vector: generation check (session + SELECT)", timed(generation_check, queries.vector)),
        row("vector: numpy matmul + top-100, no copy", timed(numpy_top, queries.vector)),
        row("vector: matrix[all rows] copy alone", timed(lambda _: matrix[everything], queries.vector)),
    ]
    return rows


# -- peers --------------------------------------------------------------------------------------------


def bench_lancedb(
    directory: Path, corpus: Corpus, queries: Queries, truth: list[set[int]]
) -> tuple[list[Row], dict[str, float]]:
    import lancedb
    import pyarrow as pa
    from lancedb.index import FTS, HnswSq, IvfPq

    database = lancedb.connect(directory / "lance")
    started = time.perf_counter()
    table = database.create_table(
        "chunks",
        pa.table(
            {
                "id": pa.array(np.arange(len(corpus.texts), dtype=np.int64)),
                "text": corpus.texts,
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(corpus.vectors.ravel()), DIM),
            }
        ),
    )
    builds = {"table_build_s": time.perf_counter() - started}
    started = time.perf_counter()
    # Porter-like stemming and lowercasing, like Keel's FTS5 tokenizer; no stopwords in this vocabulary.
    table.create_index("text", config=FTS(stem=True, remove_stop_words=False))
    builds["fts_build_s"] = time.perf_counter() - started

    def vector_search(v: Vectors, limit: int = CANDIDATES, exact: bool = False) -> list[int]:
        query = table.search(v, vector_column_name="vector").distance_type("dot").limit(limit)
        if exact:
            query = query.bypass_vector_index()
        return query.select(["id", "_distance"]).to_arrow()["id"].to_pylist()  # type: ignore[no-any-return]

    def vector_row(name: str, exact: bool) -> Row:
        found = [set(vector_search(q, K, exact)) for q in queries.vector[1:]]
        return row(
            name,
            timed(lambda v: vector_search(v, exact=exact), queries.vector),
            recall_at_10=recall(found, truth),
        )

    rows = [
        row(
            "keyword (native FTS)",
            timed(
                lambda q: (
                    table.search(q, query_type="fts").limit(CANDIDATES).select(["id", "_score"]).to_arrow()
                ),
                queries.keyword,
            ),
        ),
        vector_row("vector, exact (no index)", exact=True),
    ]
    size = len(corpus.texts)
    started = time.perf_counter()
    # ~sqrt(n) partitions and 8-dim sub-vectors: the usual IVF_PQ starting point; default nprobes.
    table.create_index(
        "vector",
        config=IvfPq(distance_type="dot", num_partitions=max(1, int(size**0.5)), num_sub_vectors=DIM // 8),
    )
    builds["ivf_pq_build_s"] = time.perf_counter() - started
    rows.append(vector_row("vector, IVF_PQ", exact=False))
    if size <= HNSW_MAX_CHUNKS:
        started = time.perf_counter()
        table.create_index(
            "vector",
            config=HnswSq(distance_type="dot", num_partitions=max(1, size // 50_000)),
            replace=True,
        )
        builds["ivf_hnsw_sq_build_s"] = time.perf_counter() - started
        rows.append(vector_row("vector, IVF_HNSW_SQ", exact=False))
    return rows, builds


def bench_bm25s(corpus: Corpus, queries: Queries) -> tuple[list[Row], dict[str, float]]:
    import bm25s

    started = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus.texts, stopwords=None, show_progress=False), show_progress=False)
    build_s = time.perf_counter() - started
    return [
        row(
            "keyword",
            timed(
                lambda q: retriever.retrieve(
                    [q.lower().split()], k=CANDIDATES, show_progress=False, n_threads=1
                ),
                queries.keyword,
            ),
        )
    ], {"build_s": build_s}


# -- report -------------------------------------------------------------------------------------------


def run_size(size: int, query_count: int, peers: list[str]) -> dict[str, Any]:
    print(f"-- {size} chunks", flush=True)
    started = time.perf_counter()
    corpus, queries = make_corpus(size, query_count)
    truth = exact_top(corpus.vectors, queries.vector[1:], K)
    result: dict[str, Any] = {"corpus_s": time.perf_counter() - started, "systems": {}}
    directory = Path(tempfile.mkdtemp(prefix="keel-scale-"))
    try:
        rows, parts, builds = bench_keel(directory, corpus, queries, truth)
        result["systems"]["Keel (SQLite FTS5 + numpy)"] = {"rows": rows, **builds}
        result["keel_parts"] = parts
        print(f"   keel done: {builds}", flush=True)
        if "lancedb" in peers:
            try:
                lance_rows, lance_builds = bench_lancedb(directory, corpus, queries, truth)
                result["systems"]["LanceDB"] = {"rows": lance_rows, **lance_builds}
                print(f"   lancedb done: {lance_builds}", flush=True)
            except ImportError as error:
                print(f"   lancedb skipped: {error}")
        if "bm25s" in peers:
            try:
                bm25_rows, bm25_builds = bench_bm25s(corpus, queries)
                result["systems"]["bm25s"] = {"rows": bm25_rows, **bm25_builds}
            except ImportError as error:
                print(f"   bm25s skipped: {error}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        gc.collect()
    return result


def markdown(results: dict[int, dict[str, Any]], query_count: int) -> str:
    lines = [
        f"Synthetic chunks (60-120 Zipf words from a {VOCABULARY:,}-word vocabulary, random unit {DIM}-d "
        f"vectors); {query_count} queries per mode after one warm-up; every retriever returns "
        f"{CANDIDATES} hits, hybrid keeps the fused top {K}. Recall@10 is against exact search.",
    ]
    for size, result in results.items():
        keel = result["systems"]["Keel (SQLite FTS5 + numpy)"]
        lines += [
            "",
            f"## {size:,} chunks",
            "",
            "| system | retrieval | p50 ms | p95 ms | recall@10 |",
            "| --- | --- | ---: | ---: | ---: |",
        ]
        for system, data in result["systems"].items():
            for r in data["rows"]:
                recall_cell = f"{r['recall_at_10']:.3f}" if "recall_at_10" in r else ""
                lines.append(
                    f"| {system} | {r['name']} | {r['latency_ms']['median']:.2f} "
                    f"| {r['latency_ms']['p95']:.2f} | {recall_cell} |"
                )
        lines += [
            "",
            "Build: "
            + "; ".join(
                f"{system} "
                + ", ".join(
                    f"{key.removesuffix('_s').replace('_', ' ')} {value:.1f} s"
                    for key, value in data.items()
                    if key.endswith("_s")
                )
                for system, data in result["systems"].items()
            )
            + f". Keel's vector matrix load (first vector search) {keel['matrix_load_ms']:.0f} ms; "
            f"SQLite file {keel['db_mib']:.0f} MiB.",
            "",
            "Where Keel's time goes (same queries, Keel's layers removed):",
            "",
            "| part | p50 ms | p95 ms |",
            "| --- | ---: | ---: |",
            *(
                f"| {r['name']} | {r['latency_ms']['median']:.2f} | {r['latency_ms']['p95']:.2f} |"
                for r in result["keel_parts"]
            ),
            "",
            f"Keyword queries match {result['keel_parts'][0]['mean_matching_chunks']:,.0f} chunks on average.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated chunk counts")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per mode and size")
    parser.add_argument("--peers", default="lancedb,bm25s", help="comma-separated; empty for Keel only")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    peers = [p for p in args.peers.split(",") if p]

    results = {size: run_size(size, args.queries, peers) for size in sizes}
    write_results(
        "retrieval_scale",
        {
            "queries_per_mode": args.queries,
            "k": K,
            "candidates": CANDIDATES,
            "vocabulary": VOCABULARY,
            "zipf_exponent": ZIPF_EXPONENT,
            "dimensions": DIM,
            "sizes": {str(size): result for size, result in results.items()},
        },
        markdown(results, args.queries),
    )


if __name__ == "__main__":
    main()
