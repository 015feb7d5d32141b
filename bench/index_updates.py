"""Vector search on the embedded SQLite index right after a write, at 100k chunks.

    .venv/bin/python -m bench.index_updates [--size 100000] [--rounds 10]

bench/retrieval_scale.py's synthetic corpus (clustered unit 384-d vectors) loaded through
`SqliteIndex.add`; then, for each round: a search with nothing written since (the cached matrix), a
search right after 16 chunks were added (the matrix is extended by the new rows), and a search right
after one document was removed (the matrix is reloaded). Each round uses a fresh query vector.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import summary, write_results
from bench.retrieval_scale import make_corpus
from keel.knowledge.index.base import IndexEntry, SearchScope
from keel.knowledge.index.sqlite import SqliteIndex
from keel.store.engine import Database

TENANT = "bench"
BATCH = 5_000


def entries(corpus: Any, start: int, stop: int, prefix: str = "") -> list[IndexEntry]:
    return [
        IndexEntry(
            chunk_id=prefix + corpus.chunk_ids[i],
            document_id=f"{prefix}doc_{i // 4:024d}",
            tenant=TENANT,
            doc_type="text",
            source=f"synthetic/{prefix}{i // 4}.txt",
            acl=[],
            text=corpus.texts[i],
            vector=corpus.vectors[i],
        )
        for i in range(start, stop)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    corpus, queries = make_corpus(args.size, args.rounds * 3)
    scope = SearchScope(TENANT)
    timings: dict[str, list[float]] = {
        "nothing written since": [],
        "16 chunks added": [],
        "a document removed": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        database = Database(f"sqlite:///{Path(tmp) / 'keel.db'}")
        database.migrate()
        index = SqliteIndex(database)
        index.ensure_schema()
        for start in range(0, args.size, BATCH):
            with database.session() as session:
                index.add(session, entries(corpus, start, min(start + BATCH, args.size)))
        index.vector_search(queries.vector[0], scope, 10)  # the first full load, not timed

        def search(vector: np.ndarray[Any, Any]) -> float:
            started = time.perf_counter()
            index.vector_search(vector, scope, 10)
            return (time.perf_counter() - started) * 1000

        load_before = os.getloadavg()
        for round_ in range(args.rounds):
            timings["nothing written since"].append(search(queries.vector[3 * round_]))
            with database.session() as session:
                # New chunks (fresh ids) of the corpus's own texts and vectors.
                index.add(session, entries(corpus, 16 * round_, 16 * round_ + 16, prefix=f"r{round_}-"))
            timings["16 chunks added"].append(search(queries.vector[3 * round_ + 1]))
            with database.session() as session:
                index.remove_document(session, TENANT, f"doc_{round_:024d}")
            timings["a document removed"].append(search(queries.vector[3 * round_ + 2]))
        database.dispose()

    data = {
        "size": args.size,
        "rounds": args.rounds,
        "latency_ms": {name: summary(values) for name, values in timings.items()},
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    lines = [
        f"SqliteIndex with {args.size:,} chunks (384-d), k=10, {args.rounds} rounds; load average "
        f"{', '.join(f'{v:.2f}' for v in load_before)} before, "
        f"{', '.join(f'{v:.2f}' for v in data['load_average_after'])} after.",
        "",
        "| vector search | p50 ms | max ms |",
        "| --- | ---: | ---: |",
        *(
            f"| {name} | {stats['median']:.1f} | {stats['max']:.1f} |"
            for name, stats in data["latency_ms"].items()
        ),
    ]
    write_results("index_updates", data, "\n".join(lines))


if __name__ == "__main__":
    main()
