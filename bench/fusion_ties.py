"""How much of SciFact's hybrid nDCG@10 rests on how fusion breaks ties: the keyword and vector rankings
are taken once through Keel's own search, then fused again and again under fresh random chunk ids.

    .venv/bin/python -m bench.fusion_ties [--data ../shared/data/scifact] [--rankings FILE] [--draws N]

Chunk ids are random (uuid4), so a fusion that breaks ties by chunk id ranks tied chunks in a different
order after every ingestion; the spread over the draws is what a re-run of bench.retrieval_scifact could
move by without any change to the code, before fusion broke ties by rank instead. `--rankings` keeps
the rankings in a file for the next run.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.harness import write_results
from bench.retrieval_scifact import TENANT, corpus_requests, ingest, load_corpus, load_qrels, ndcg_at
from keel.config import ChunkingSettings, KnowledgeSettings, Settings
from keel.knowledge.fusion import Fused, reciprocal_rank_fusion, weighted_fusion
from keel.knowledge.index.base import Hit, SearchScope
from keel.runtime import Runtime
from keel.store.models import Chunk, Document

Fuse = Callable[[dict[str, list[Hit]]], list[Fused]]
# query id -> retriever -> [(chunk id, corpus id, score)], best first
Rankings = dict[str, dict[str, list[tuple[str, str, float]]]]
DEPTH = 200  # the candidates per retriever that bench.retrieval_scifact asks for


def collect(data: Path, query_ids: set[str], limit_docs: int | None) -> Rankings:
    """Each retriever's DEPTH best chunks per query, straight from the index (the search API caps k at
    100); the query vector from the same model the retriever uses."""
    corpus = load_corpus(data)[:limit_docs]
    queries = {
        q["_id"]: q["text"] for q in map(json.loads, (data / "queries.jsonl").read_text().splitlines())
    }
    rankings: Rankings = {}
    scope = SearchScope(tenant=TENANT)
    with tempfile.TemporaryDirectory() as data_dir:
        knowledge = KnowledgeSettings(chunking={"text": ChunkingSettings(max_chars=20000)})
        runtime = Runtime.build(Settings(data_dir=Path(data_dir), knowledge=knowledge))
        runtime.prepare()
        runtime.warm_up()
        ingest(runtime, corpus_requests(corpus))
        with runtime.database.reading() as session:
            rows = session.execute(select(Chunk.id, Document.source).join(Document))
            corpus_of = {chunk_id: source for chunk_id, source in rows}
        for query_id in sorted(query_ids):
            query = queries[query_id]
            vector = runtime.embedding_model.embed([query])[0]
            found = {
                "keyword": runtime.index.keyword_search(query, scope, DEPTH),
                "vector": runtime.index.vector_search(vector, scope, DEPTH),
            }
            rankings[query_id] = {
                name: [(h.chunk_id, corpus_of[h.chunk_id], h.score) for h in hits]
                for name, hits in found.items()
            }
        runtime.close()
    return rankings


def fused_ndcg(
    rankings: Rankings,
    qrels: dict[str, dict[str, int]],
    fuse: Fuse,
    *,
    relabel: dict[str, str] | None = None,
    by_id: bool = False,
    vector_first: bool = False,
) -> float:
    """Mean nDCG@10 of the fusion as shipped; `by_id` breaks its ties by chunk id instead (as Keel did
    before), under the ids `relabel` gives; `vector_first` hands fusion the vector ranking first."""
    scores = []
    for query_id, relevant in qrels.items():
        corpus_of: dict[str, str] = {}
        ranked: dict[str, list[Hit]] = {}
        for name in ("vector", "keyword") if vector_first else ("keyword", "vector"):
            ranked[name] = []
            for chunk_id, corpus_id, score in rankings[query_id][name]:
                label = relabel[chunk_id] if relabel is not None else chunk_id
                corpus_of[label] = corpus_id
                ranked[name].append(Hit(label, score))
        fused = fuse(ranked)
        if by_id:
            fused = sorted(fused, key=lambda e: (-e.score, e.chunk_id))
        documents = list(dict.fromkeys(corpus_of[f.chunk_id] for f in fused[:100]))
        scores.append(ndcg_at(documents, relevant, 10))
    return sum(scores) / len(scores)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/data/scifact"))
    parser.add_argument("--rankings", type=Path, default=None)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--limit-docs", type=int, default=None, help="A smoke test on part of the corpus.")
    args = parser.parse_args()

    splits = {name: load_qrels(args.data / f"qrels/{name}.tsv") for name in ("train", "test")}
    if args.rankings is not None and args.rankings.exists():
        rankings: Rankings = json.loads(args.rankings.read_text())
    else:
        rankings = collect(args.data, {q for qrels in splits.values() for q in qrels}, args.limit_docs)
        if args.rankings is not None:
            args.rankings.write_text(json.dumps(rankings))

    fusions: dict[str, Fuse] = {
        "rrf k=60": lambda ranked: reciprocal_rank_fusion(ranked, k=60),
        "weighted:0.5": lambda ranked: weighted_fusion(ranked, {"keyword": 0.5, "vector": 0.5}),
    }
    chunk_ids = sorted({c for per in rankings.values() for hits in per.values() for c, _, _ in hits})
    draw = random.Random(15)
    relabellings = []
    for _ in range(args.draws):
        shuffled = chunk_ids[:]
        draw.shuffle(shuffled)
        relabellings.append(dict(zip(chunk_ids, shuffled, strict=True)))

    results: dict[str, dict[str, Any]] = {}
    for split, qrels in splits.items():
        for name, fuse in fusions.items():
            draws = [fused_ndcg(rankings, qrels, fuse, relabel=r, by_id=True) for r in relabellings]
            shipped = [fused_ndcg(rankings, qrels, fuse, relabel=r) for r in relabellings[:5]]
            results[f"{split} {name}"] = {
                "by_id_mean": statistics.fmean(draws),
                "by_id_stdev": statistics.stdev(draws),
                "by_id_min": min(draws),
                "by_id_max": max(draws),
                "keyword_first": shipped[0],
                # The shipped order ignores the ids: every relabelling gives the same ranking.
                "keyword_first_same_under_relabelling": len(set(shipped)) == 1,
                "vector_first": fused_ndcg(rankings, qrels, fuse, vector_first=True),
            }
    lines = [
        f"SciFact hybrid nDCG@10, keyword and vector rankings taken once ({DEPTH} candidates each), fused",
        f"with ties broken by chunk id under {args.draws} random relabellings of the ids (how Keel broke",
        "them before: ids are random, so each ingestion drew one of these), and by rank then retriever",
        "(keyword first: what ships; vector first: the alternative).",
        "",
        "| split, fusion | by id: mean | stdev | min | max | keyword first | vector first |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *(
            f"| {name} | {r['by_id_mean']:.4f} | {r['by_id_stdev']:.4f} | {r['by_id_min']:.4f} "
            f"| {r['by_id_max']:.4f} | {r['keyword_first']:.4f} | {r['vector_first']:.4f} |"
            for name, r in results.items()
        ),
    ]
    write_results("fusion_ties", {"draws": args.draws, "depth": DEPTH, "results": results}, "\n".join(lines))


if __name__ == "__main__":
    main()
