"""2. Hybrid retrieval at scale: the same synthetic chunks in pgvector and in SQLite, timed on the index."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import text
from tests.services.pg import TestPostgres

from bench.harness import summary
from bench.retrieval_scale import (
    BATCH,
    CANDIDATES,
    CHUNKS_PER_DOCUMENT,
    DIM,
    KEYWORD_WEIGHT,
    Corpus,
    K,
    Queries,
    exact_top,
    make_corpus,
    recall,
    timed,
)
from bench.scale.fleet import load_average
from bench.scale.plan import SEARCH_TENANT, Plan
from keel.knowledge.fusion import weighted_fusion
from keel.knowledge.index.base import IndexEntry, KnowledgeIndex, SearchScope
from keel.knowledge.index.postgres import PostgresIndex
from keel.knowledge.index.sqlite import SqliteIndex
from keel.store.engine import Database

# -- 2. retrieval at scale -----------------------------------------------------------------------------


def build_index(database: Database, index: KnowledgeIndex, corpus: Corpus) -> float:
    started = time.perf_counter()
    for start in range(0, len(corpus.texts), BATCH):
        entries = [
            IndexEntry(
                chunk_id=corpus.chunk_ids[i],
                document_id=f"doc_{i // CHUNKS_PER_DOCUMENT:024d}",
                tenant=SEARCH_TENANT,
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
    return time.perf_counter() - started


def measure_index(
    index: KnowledgeIndex, corpus: Corpus, queries: Queries, truth: list[set[int]]
) -> list[Any]:
    scope = SearchScope(tenant=SEARCH_TENANT)

    def keyword(query: str) -> object:
        return index.keyword_search(query, scope, CANDIDATES)

    def vector(query: Any) -> object:
        return index.vector_search(query, scope, CANDIDATES)

    def hybrid(item: tuple[str, Any]) -> object:
        ranked = {
            "keyword": index.keyword_search(item[0], scope, CANDIDATES),
            "vector": index.vector_search(item[1], scope, CANDIDATES),
        }
        return weighted_fusion(ranked, {"keyword": KEYWORD_WEIGHT, "vector": 1 - KEYWORD_WEIGHT})[:K]

    position = {chunk_id: i for i, chunk_id in enumerate(corpus.chunk_ids)}
    found = [{position[h.chunk_id] for h in index.vector_search(q, scope, K)} for q in queries.vector[1:]]
    pairs = list(zip(queries.keyword, queries.vector, strict=True))
    return [
        {"name": "keyword", "latency_ms": summary(timed(keyword, queries.keyword))},
        {
            "name": "vector",
            "latency_ms": summary(timed(vector, queries.vector)),
            "recall_at_10": recall(found, truth),
        },
        {"name": "hybrid (weighted fusion)", "latency_ms": summary(timed(hybrid, pairs))},
    ]


def search_phase(postgres: TestPostgres, plan: Plan) -> dict[str, Any]:
    started = time.perf_counter()
    corpus, queries = make_corpus(plan.search_size, plan.search_queries)
    truth = exact_top(corpus.vectors, queries.vector[1:], K)
    result: dict[str, Any] = {"size": plan.search_size, "corpus_s": time.perf_counter() - started}
    print(f"   corpus of {plan.search_size} chunks ready", flush=True)

    with tempfile.TemporaryDirectory(prefix="keel-scale-sqlite-") as directory:
        path = Path(directory) / "keel.db"
        database = Database(f"sqlite:///{path}")
        try:
            database.migrate()
            sqlite_index = SqliteIndex(database)
            sqlite_index.ensure_schema()
            build_s = build_index(database, sqlite_index, corpus)
            print(f"   SQLite built in {build_s:.0f} s", flush=True)
            result["sqlite"] = {
                "build_s": build_s,
                "rows": measure_index(sqlite_index, corpus, queries, truth),
                "size_mib": path.stat().st_size / 2**20,
            }
        finally:
            database.dispose()

    name = postgres.create_database()
    database = Database(postgres.url(name))
    try:
        database.migrate(embedding_dimensions=DIM)
        pg_index = PostgresIndex(database, DIM)
        pg_index.ensure_schema()
        build_s = build_index(database, pg_index, corpus)
        print(f"   pgvector built in {build_s:.0f} s", flush=True)
        with database.session() as session:
            # What autovacuum would do soon after a bulk load; the planner's choices depend on it.
            session.execute(text("ANALYZE chunk_index"))
        with database.session() as session:
            size = session.execute(text("SELECT pg_total_relation_size('chunk_index')")).scalar_one()
        result["pgvector"] = {
            "build_s": build_s,
            "rows": measure_index(pg_index, corpus, queries, truth),
            "size_mib": int(size) / 2**20,
            "ef_search": 100,
        }
    finally:
        database.dispose()
        postgres.drop_database(name)
    result["load_average_after"] = load_average()
    return result
