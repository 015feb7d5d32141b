from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from keel.knowledge.embedding_cache import CachedEmbedder
from keel.knowledge.fusion import reciprocal_rank_fusion, weighted_fusion
from keel.knowledge.index.base import Hit
from keel.knowledge.index.sqlite import keyword_query
from keel.knowledge.packing import PackInput, pack
from keel.knowledge.retrieval import SearchResult, StageScore, rerank_results
from keel.store.engine import Database


def test_rrf_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion(
        {"keyword": [Hit("a", 9), Hit("b", 5)], "vector": [Hit("b", 0.9), Hit("c", 0.8)]}, k=60
    )
    assert [f.chunk_id for f in fused] == ["b", "a", "c"]
    assert fused[0].stages == {"keyword": {"score": 5, "rank": 2}, "vector": {"score": 0.9, "rank": 1}}


def test_fusion_breaks_ties_by_rank_then_retriever_never_by_id() -> None:
    # "z" and "a" tie (each is rank 2 of one list alone), as do "y" and "b" (rank 3): the keyword list's
    # chunk goes first whatever the ids; renaming every chunk leaves the ranking as it was.
    def ranked(ids: dict[str, str]) -> dict[str, list[Hit]]:
        return {
            "keyword": [Hit(ids["top"], 9.0), Hit(ids["z"], 5.0), Hit(ids["y"], 1.0)],
            "vector": [Hit(ids["top"], 1.0), Hit(ids["a"], 0.75), Hit(ids["b"], 0.5)],
        }

    names = {n: n for n in ("top", "z", "y", "a", "b")}
    renamed = {"top": "m", "z": "q", "y": "r", "a": "c", "b": "d"}
    for fuse in (
        lambda r: reciprocal_rank_fusion(r, k=60),
        lambda r: weighted_fusion(r, {"keyword": 0.5, "vector": 0.5}),
    ):
        assert [f.chunk_id for f in fuse(ranked(names))] == ["top", "z", "a", "y", "b"]
        assert [f.chunk_id for f in fuse(ranked(renamed))] == ["m", "q", "c", "r", "d"]


def test_weighted_fusion_mixes_normalised_scores() -> None:
    ranked = {"keyword": [Hit("a", 20.0), Hit("b", 10.0)], "vector": [Hit("b", 0.9), Hit("a", 0.1)]}
    assert weighted_fusion(ranked, {"keyword": 0.8, "vector": 0.2})[0].chunk_id == "a"
    assert weighted_fusion(ranked, {"keyword": 0.2, "vector": 0.8})[0].chunk_id == "b"


def test_keyword_query_quotes_words_and_defuses_syntax() -> None:
    assert keyword_query('the "battery" NEAR(charge) OR -x*') == '"battery" OR "near" OR "charge" OR "x"'
    assert keyword_query("the of") == '"the" OR "of"'
    assert keyword_query("?!") is None


def words(text: str) -> int:
    return len(text.split())


def test_packing_dedupes_merges_neighbours_and_fits() -> None:
    chunks = [
        PackInput("c2", "d1", 2, "the rack holds twenty five kilograms of luggage"),
        PackInput("dup", "d2", 0, "the rack holds twenty five kilograms of luggage"),
        PackInput("c1", "d1", 1, "rear rack."),
        PackInput("x", "d3", 0, "One. Two three. Four five six seven eight."),
    ]
    passages = pack(chunks, budget=14, count_tokens=words)
    assert [p.chunk_ids for p in passages] == [["c1", "c2"], ["x"]]
    assert passages[0].text.startswith("rear rack.")
    assert passages[1].trimmed and passages[1].text == "One. Two three."
    assert sum(p.tokens for p in passages) <= 14


def result(chunk_id: str, score: float) -> SearchResult:
    return SearchResult(
        chunk_id=chunk_id,
        document_id="d",
        title="",
        source="s",
        doc_type="text",
        heading_path="",
        ordinal=0,
        text=chunk_id,
        meta={},
        score=score,
        scores={"keyword": StageScore(score=score, rank=1)},
    )


def test_rerank_reorders_and_keeps_earlier_stage_scores() -> None:
    reranked = rerank_results([result("a", 3), result("b", 2)], [0.1, 0.7])
    assert [r.chunk_id for r in reranked] == ["b", "a"]
    assert set(reranked[0].scores) == {"keyword", "rerank"}
    assert reranked[0].scores["rerank"].rank == 1


class CountingEmbedder:
    """Stands in for the embedding model; counts the texts it is asked to embed."""

    dimensions = 2
    model_id = "test-model"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, tenant: str, texts: list[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    async def aembed(self, tenant: str, texts: list[str]) -> npt.NDArray[np.float32]:
        return self.embed(tenant, texts)


def test_embedding_cache_embeds_each_text_once(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'cache.db'}")
    database.migrate()
    model = CountingEmbedder()
    cache = CachedEmbedder(database, model, batch_size=2)
    first = cache.embed("acme", ["aa", "b", "aa", "ccc"])
    assert sorted(t for call in model.calls for t in call) == ["aa", "b", "ccc"]
    assert first[:, 0].tolist() == [2, 1, 2, 3]
    model.calls.clear()
    again = CachedEmbedder(database, model).embed("acme", ["ccc", "aa", "dddd"])
    assert model.calls == [["dddd"]]
    assert again[:, 0].tolist() == [3, 2, 4]
    assert cache.embed("acme", []).shape == (0, 2)


def test_a_lone_weak_hit_is_not_normalised_to_a_perfect_score() -> None:
    # One vector hit of cosine 0.12 and nothing from the keyword side: no range to normalise against.
    lone = weighted_fusion({"keyword": [], "vector": [Hit("a", 0.12)]}, {"keyword": 0.5, "vector": 0.5})
    assert lone[0].score == 0.5 * 0.12
    # An unbounded BM25 score is squashed onto [0, 1]: a strong lone match scores above a weak one.
    weak = weighted_fusion({"keyword": [Hit("a", 0.5)]}, {"keyword": 1.0})[0].score
    strong = weighted_fusion({"keyword": [Hit("a", 12.0)]}, {"keyword": 1.0})[0].score
    assert weak == 0.5 and 0.9 < strong < 1.0
    # With a spread, min-max still ranks: the best of several hits is 1.0 on its retriever.
    several = weighted_fusion({"vector": [Hit("a", 0.3), Hit("b", 0.1)]}, {"vector": 1.0})
    assert [f.score for f in several] == [1.0, 0.0]
