"""Query latency of Keel's embedded index (SQLite FTS5 BM25 + exact numpy cosine) at 10k and 100k chunks,
next to LanceDB (exact and IVF_PQ vector search, native full-text search) and bm25s on the same data.

    .venv/bin/python -m bench.retrieval_scale [--sizes 10000,100000] [--queries 200]
        [--peers lancedb,bm25s] [--ann ivf_pq[,ivf_hnsw_sq]]

The corpus is synthetic, because scale is what is measured, not relevance: each chunk is 60-120 words
drawn from a Zipf-distributed vocabulary of 30k pseudo-words, and a unit float32 vector of 384 dimensions
(MiniLM-L6's width) scattered around one of 1,000 random centres, so that nearest neighbours exist the way
they do in real embeddings (on uniform random vectors every ANN index scores a meaningless recall; exact
search costs the same either way). Everything comes from seeded generators. Keyword queries are 3-6 words
drawn from the same distribution minus its 100 most frequent words (in real text that head is mostly
stopwords, which Keel drops); vector queries are drawn like the chunks' vectors.

Keel is measured through its own index code: a `Database` on a temporary SQLite file, migrated, with
`SqliteIndex.add` writing 5,000 chunks per transaction, then `keyword_search` / `vector_search` called
directly (no HTTP, no query embedding, no hydration of chunk rows). Hybrid is keyword + vector +
`weighted_fusion`, timed as a whole. Every retriever, peers included, is asked for `candidates` hits
(100, what Keel's Retriever asks its index for in every mode); hybrid keeps the fused top k=10.
Each mode gets one untimed warm-up query; Keel's first vector search, which loads the tenant's matrix
from SQLite, is reported as the matrix load time. Recall@10 is measured against exact numpy search.

A second table per size takes Keel's latency apart (raw sqlite3 with the same SQL and variants of it,
bare numpy over the same matrix, BLAS held to one thread) to show where the time goes. Peers need the
`bench` extra (lancedb, bm25s); a peer that is not installed is skipped.
"""

from __future__ import annotations

import argparse
import gc
import os
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
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

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
CENTRES = 1_000
# Noise of norm 1 around a unit centre: cosine ~0.7 to the centre, ~0.5 between neighbours.
NOISE = 1.0 / np.sqrt(DIM)
BATCH = 5_000
K = 10
CANDIDATES = RetrievalSettings().candidates
KEYWORD_WEIGHT = RetrievalSettings().keyword_weight
CHUNKS_PER_DOCUMENT = 4
KEEL = "Keel (SQLite FTS5 + numpy)"

Vectors = npt.NDArray[np.float32]
Row = dict[str, Any]


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
        words["".join(rng.choice(letters, int(rng.integers(5, 11))))] = None
    return list(words)


def clustered_unit_vectors(rng: np.random.Generator, centres: Vectors, count: int) -> Vectors:
    vectors = centres[rng.integers(0, len(centres), count)]
    vectors += rng.standard_normal((count, DIM), dtype=np.float32) * np.float32(NOISE)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def make_corpus(size: int, queries: int, seed: int = 7) -> tuple[Corpus, Queries]:
    rng = np.random.default_rng(seed)
    vocabulary = pseudo_words(rng, VOCABULARY)
    weights = 1.0 / np.arange(1, VOCABULARY + 1, dtype=np.float64) ** ZIPF_EXPONENT
    lengths = rng.integers(60, 121, size)
    words = rng.choice(VOCABULARY, size=int(lengths.sum()), p=weights / weights.sum())
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    texts = [" ".join(vocabulary[w] for w in words[offsets[i] : offsets[i + 1]]) for i in range(size)]
    centres = rng.standard_normal((CENTRES, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = clustered_unit_vectors(rng, centres, size)
    chunk_ids = [f"chk_{rng.bytes(12).hex()}" for _ in range(size)]  # random, like Keel's uuid4 ids

    query_rng = np.random.default_rng(seed + 1)
    tail = weights[QUERY_SKIPS_HEAD:] / weights[QUERY_SKIPS_HEAD:].sum()
    keyword = [
        " ".join(
            vocabulary[QUERY_SKIPS_HEAD + w]
            for w in query_rng.choice(len(tail), int(query_rng.integers(3, 7)), p=tail)
        )
        for _ in range(queries + 1)
    ]
    vector = clustered_unit_vectors(query_rng, centres, queries + 1)
    return Corpus(chunk_ids, texts, vectors), Queries(keyword, vector)


def timed(run: Callable[[Any], object], inputs: Sequence[Any] | Vectors) -> list[float]:
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

    def keyword(query: str) -> object:
        return index.keyword_search(query, SCOPE, CANDIDATES)

    def vector(query: Vectors) -> object:
        return index.vector_search(query, SCOPE, CANDIDATES)

    def hybrid(item: tuple[str, Vectors]) -> object:
        ranked = {
            "keyword": index.keyword_search(item[0], SCOPE, CANDIDATES),
            "vector": index.vector_search(item[1], SCOPE, CANDIDATES),
        }
        return weighted_fusion(ranked, {"keyword": KEYWORD_WEIGHT, "vector": 1 - KEYWORD_WEIGHT})[:K]

    pairs = list(zip(queries.keyword, queries.vector, strict=True))
    position = {chunk_id: i for i, chunk_id in enumerate(corpus.chunk_ids)}
    found = [{position[h.chunk_id] for h in index.vector_search(q, SCOPE, K)} for q in queries.vector[1:]]
    rows = [
        row("keyword (BM25)", timed(keyword, queries.keyword)),
        row("vector, exact", timed(vector, queries.vector), recall_at_10=recall(found, truth)),
        row("hybrid (weighted fusion)", timed(hybrid, pairs)),
    ]
    parts = keel_parts(database, path, corpus, queries)
    # OpenBLAS spreads one matrix-vector product over every core; on a busy 2-core box waking the
    # second thread can cost more than the product itself.
    with threadpool_limits(limits=1, user_api="blas"):
        parts += [
            row("vector: Keel's vector_search, BLAS on 1 thread", timed(vector, queries.vector)),
            row("hybrid: Keel's path, BLAS on 1 thread", timed(hybrid, pairs)),
        ]
    database.dispose()
    return rows, parts, {"build_s": build_s, "matrix_load_ms": load_ms, "db_mib": path.stat().st_size / 2**20}


def keel_parts(database: Database, path: Path, corpus: Corpus, queries: Queries) -> list[Row]:
    """The same work as Keel's searches with Keel's layers removed, to show which part costs what."""
    connection = sqlite3.connect(path)
    matches = [keyword_query(q) for q in queries.keyword]
    keel_sql = (
        "SELECT chunk_id, -bm25(chunk_fts) AS score FROM chunk_fts WHERE chunk_fts MATCH ? AND tenant = ? "
        "ORDER BY bm25(chunk_fts) LIMIT ?"
    )
    # FTS5 sorts by `rank` itself and hands rows over best first, so the tenant check (a content-row
    # read) runs until the limit is met rather than for every match.
    rank_sql = (
        "SELECT chunk_id, -rank AS score FROM chunk_fts WHERE chunk_fts MATCH ? AND tenant = ? "
        "ORDER BY rank LIMIT ?"
    )
    # Neither tenant nor chunk_id: FTS5 never reads a content row, only doclists and bm25.
    doclists_sql = (
        "SELECT rowid, -bm25(chunk_fts) AS score FROM chunk_fts WHERE chunk_fts MATCH ? "
        "ORDER BY bm25(chunk_fts) LIMIT ?"
    )
    count_sql = "SELECT count(*) FROM chunk_fts WHERE chunk_fts MATCH ?"
    counts = [connection.execute(count_sql, (m,)).fetchone()[0] for m in matches[1:]]
    rows = [
        row(
            "keyword: raw sqlite3, Keel's SQL",
            timed(lambda m: connection.execute(keel_sql, (m, TENANT, CANDIDATES)).fetchall(), matches),
            mean_matching_chunks=statistics.fmean(counts),
        ),
        row(
            "keyword: raw sqlite3, ORDER BY rank instead of bm25()",
            timed(lambda m: connection.execute(rank_sql, (m, TENANT, CANDIDATES)).fetchall(), matches),
        ),
        row(
            "keyword: raw sqlite3, rowid only, no tenant filter",
            timed(lambda m: connection.execute(doclists_sql, (m, CANDIDATES)).fetchall(), matches),
        ),
        row(
            "keyword: count(*) of matching chunks",
            timed(lambda m: connection.execute(count_sql, (m,)).fetchone(), matches),
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

    return [
        *rows,
        row("vector: generation check (session + SELECT)", timed(generation_check, queries.vector)),
        row("vector: numpy matmul + top-100, no copy", timed(numpy_top, queries.vector)),
        row("vector: matrix[all rows] copy alone", timed(lambda _: matrix[everything], queries.vector)),
    ]


# -- peers --------------------------------------------------------------------------------------------


def bench_lancedb(
    directory: Path, corpus: Corpus, queries: Queries, truth: list[set[int]], ann: list[str]
) -> tuple[list[Row], dict[str, float]]:
    import lancedb
    import pyarrow as pa  # type: ignore[import-untyped]
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
    # Stemmed and lowercased like Keel's FTS5 tokenizer; this vocabulary has no stopwords to remove.
    table.create_index("text", config=FTS(stem=True, remove_stop_words=False))
    builds["fts_build_s"] = time.perf_counter() - started

    def vector_search(v: Vectors, limit: int, exact: bool, probes: int | None, refine: int | None) -> Any:
        query: Any = table.search(v, vector_column_name="vector")
        query = query.distance_type("dot").limit(limit)
        if exact:
            query = query.bypass_vector_index()
        if probes:
            query = query.nprobes(probes)
        if refine:
            query = query.refine_factor(refine)
        return query.select(["id", "_distance"]).to_arrow()

    def vector_row(
        name: str, exact: bool = False, probes: int | None = None, refine: int | None = None
    ) -> Row:
        found = [
            set(vector_search(q, K, exact, probes, refine)["id"].to_pylist()) for q in queries.vector[1:]
        ]
        latencies = timed(lambda v: vector_search(v, CANDIDATES, exact, probes, refine), queries.vector)
        return row(name, latencies, recall_at_10=recall(found, truth))

    def keyword(query: str) -> object:
        return table.search(query, query_type="fts").limit(CANDIDATES).select(["id", "_score"]).to_arrow()

    rows = [
        row("keyword (native FTS)", timed(keyword, queries.keyword)),
        vector_row("vector, exact", exact=True),
    ]
    size = len(corpus.texts)
    if "ivf_pq" in ann:
        started = time.perf_counter()
        # ~sqrt(n) partitions and 8-dimension sub-vectors: the usual IVF_PQ starting point.
        ivf_pq = IvfPq(distance_type="dot", num_partitions=max(1, int(size**0.5)), num_sub_vectors=DIM // 8)
        table.create_index("vector", config=ivf_pq)
        builds["ivf_pq_build_s"] = time.perf_counter() - started
        rows += [
            vector_row("vector, IVF_PQ (default 20 probes)"),
            vector_row("vector, IVF_PQ, 50 probes, refine x5", probes=50, refine=5),
        ]
    if "ivf_hnsw_sq" in ann:
        started = time.perf_counter()
        hnsw_sq = HnswSq(distance_type="dot", num_partitions=max(1, size // 50_000))
        table.create_index("vector", config=hnsw_sq, replace=True)
        builds["ivf_hnsw_sq_build_s"] = time.perf_counter() - started
        rows.append(vector_row("vector, IVF_HNSW_SQ"))
    return rows, builds


def bench_bm25s(corpus: Corpus, queries: Queries) -> tuple[list[Row], dict[str, float]]:
    import bm25s  # type: ignore[import-untyped]

    started = time.perf_counter()
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus.texts, stopwords=None, show_progress=False), show_progress=False)
    build_s = time.perf_counter() - started

    def keyword(query: str) -> object:
        return retriever.retrieve([query.lower().split()], k=CANDIDATES, show_progress=False, n_threads=1)

    return [row("keyword (BM25, numpy backend)", timed(keyword, queries.keyword))], {"build_s": build_s}


# -- report -------------------------------------------------------------------------------------------


def run_size(size: int, query_count: int, peers: list[str], ann: list[str]) -> dict[str, Any]:
    print(f"-- {size} chunks", flush=True)
    started = time.perf_counter()
    corpus, queries = make_corpus(size, query_count)
    truth = exact_top(corpus.vectors, queries.vector[1:], K)
    result: dict[str, Any] = {"corpus_s": time.perf_counter() - started, "systems": {}}
    directory = Path(tempfile.mkdtemp(prefix="keel-scale-"))
    try:
        rows, parts, builds = bench_keel(directory, corpus, queries, truth)
        result["systems"][KEEL] = {"rows": rows, **builds}
        result["keel_parts"] = parts
        print(f"   Keel: {builds}", flush=True)
        if "lancedb" in peers:
            try:
                lance_rows, lance_builds = bench_lancedb(directory, corpus, queries, truth, ann)
                result["systems"]["LanceDB"] = {"rows": lance_rows, **lance_builds}
                print(f"   LanceDB: {lance_builds}", flush=True)
            except ImportError as error:
                print(f"   LanceDB skipped: {error}")
        if "bm25s" in peers:
            try:
                bm25_rows, bm25_builds = bench_bm25s(corpus, queries)
                result["systems"]["bm25s"] = {"rows": bm25_rows, **bm25_builds}
            except ImportError as error:
                print(f"   bm25s skipped: {error}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        gc.collect()
    result["load_average_after"] = os.getloadavg()
    return result


def markdown(results: dict[int, dict[str, Any]], query_count: int, load_before: Sequence[float]) -> str:
    lines = [
        f"Synthetic chunks: 60-120 Zipf words from a {VOCABULARY:,}-word vocabulary, unit {DIM}-d vectors "
        f"around {CENTRES:,} random centres. {query_count} queries per mode after one warm-up; every "
        f"retriever returns {CANDIDATES} hits, hybrid keeps the fused top {K}. Recall@10 is against exact "
        "search. Keel is timed in-process through `SqliteIndex` (no HTTP, no query embedding, no hydration).",
        "",
        f"1/5/15-minute load average at the start: {', '.join(f'{x:.1f}' for x in load_before)} "
        f"(the machine has {len(os.sched_getaffinity(0))} cores; anything above that means contention).",
    ]
    for size, result in results.items():
        keel = result["systems"][KEEL]
        builds = "; ".join(
            f"{system}: "
            + ", ".join(
                f"{key.removesuffix('_s').replace('_', ' ')} {value:.1f} s"
                for key, value in data.items()
                if key.endswith("_s")
            )
            for system, data in result["systems"].items()
        )
        lines += [
            "",
            f"## {size:,} chunks",
            "",
            "| system | retrieval | p50 ms | p95 ms | recall@10 |",
            "| --- | --- | ---: | ---: | ---: |",
            *(
                f"| {system} | {r['name']} | {r['latency_ms']['median']:.2f} | {r['latency_ms']['p95']:.2f} "
                f"| {r['recall_at_10']:.3f} |"
                if "recall_at_10" in r
                else f"| {system} | {r['name']} | {r['latency_ms']['median']:.2f} "
                f"| {r['latency_ms']['p95']:.2f} | |"
                for system, data in result["systems"].items()
                for r in data["rows"]
            ),
            "",
            f"Build times: {builds}. Keel's vector matrix load (its first vector search) "
            f"{keel['matrix_load_ms']:.0f} ms; Keel's SQLite file {keel['db_mib']:.0f} MiB. "
            f"Load average after this size: {', '.join(f'{x:.1f}' for x in result['load_average_after'])}.",
            "",
            "Where Keel's time goes (same queries; Keel's layers removed or changed one at a time):",
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
    parser = argparse.ArgumentParser(description="Keel index latency at scale, next to peers.")
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated chunk counts")
    parser.add_argument("--queries", type=int, default=200, help="timed queries per mode and size")
    parser.add_argument("--peers", default="lancedb,bm25s", help="comma-separated; empty for Keel alone")
    parser.add_argument(
        "--ann", default="ivf_pq", help="LanceDB ANN indexes: ivf_pq, ivf_hnsw_sq (~3 min to build at 100k)"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    peers = [p for p in args.peers.split(",") if p]
    ann = [a for a in args.ann.split(",") if a]

    load_before = os.getloadavg()
    results = {size: run_size(size, args.queries, peers, ann) for size in sizes}
    write_results(
        "retrieval_scale",
        {
            "queries_per_mode": args.queries,
            "k": K,
            "candidates": CANDIDATES,
            "vocabulary": VOCABULARY,
            "zipf_exponent": ZIPF_EXPONENT,
            "dimensions": DIM,
            "vector_centres": CENTRES,
            "load_average_before": load_before,
            "sizes": {str(size): result for size, result in results.items()},
        },
        markdown(results, args.queries, load_before),
    )


if __name__ == "__main__":
    main()
