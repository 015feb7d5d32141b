"""Evaluation metrics on cases worked out by hand."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from keel.evals import metrics


def test_retrieval_scores_by_hand() -> None:
    # Expected d1 and d3; retrieved d2, d1, d4: the first hit at rank 2, one of two found.
    scores = metrics.retrieval_scores(["d2", "d1", "d4"], ["d1", "d3"])
    assert scores["recall@1"] == 0.0
    assert scores["recall@5"] == scores["recall@10"] == 0.5
    assert scores["mrr"] == 0.5
    # DCG = 1/log2(3); ideal DCG = 1 + 1/log2(3).
    ideal = 1 + 1 / math.log2(3)
    assert scores["ndcg@10"] == pytest.approx((1 / math.log2(3)) / ideal)


def test_retrieval_scores_perfect_empty_and_not_applicable() -> None:
    perfect = metrics.retrieval_scores(["a", "b", "x"], ["a", "b"])
    assert perfect["recall@5"] == perfect["mrr"] == perfect["ndcg@10"] == 1.0
    assert perfect["recall@1"] == 0.5
    assert set(metrics.retrieval_scores([], ["a"]).values()) == {0.0}
    assert set(metrics.retrieval_scores(["a"], []).values()) == {None}


def test_retrieval_counts_a_document_once() -> None:
    # Two chunks of one document: the second does not push the next document down a rank.
    assert metrics.retrieval_scores(["a", "a", "b"], ["b"])["mrr"] == 0.5


def test_label_ranking_accepts_sources_or_document_ids() -> None:
    hits = [("faq.md", "doc_1"), ("refunds.md", "doc_2")]
    assert metrics.label_ranking(hits, ["doc_2"]) == ["faq.md", "doc_2"]
    assert metrics.label_ranking(hits, ["refunds.md"]) == ["faq.md", "refunds.md"]


def test_answer_f1_by_hand() -> None:
    # Normalised: "cat sat" against "cat sat on mat": precision 2/2, recall 2/4, F1 2/3.
    assert metrics.answer_f1("The cat sat.", "a cat sat on the mat") == pytest.approx(2 / 3)
    assert metrics.answer_f1("", "") == 1.0
    assert metrics.answer_f1("nothing alike", "cat") == 0.0
    # Repeated tokens count as often as both sides have them.
    assert metrics.answer_f1("cat cat", "cat") == pytest.approx(2 * 0.5 * 1 / 1.5)


def test_cosine_and_source_precision() -> None:
    assert metrics.cosine(np.array([1.0, 0.0]), np.array([1.0, 1.0])) == pytest.approx(1 / math.sqrt(2))
    assert metrics.cosine(np.zeros(2), np.ones(2)) == 0.0
    assert metrics.source_precision(["a", "b", "a"], ["a"]) == 0.5
    assert metrics.source_precision([], ["a"]) is None


@pytest.mark.parametrize(
    ("answerability", "status", "expected"),
    [
        ("answerable", "answered", 1.0),
        ("answerable", "escalated", 0.0),
        ("partial", "answered", 1.0),
        ("unanswerable", "needs_clarification", 1.0),
        ("unanswerable", "answered", 0.0),
        ("underspecified", "escalated", 1.0),
        (None, "answered", None),
    ],
)
def test_answerability_handling(answerability: str | None, status: str, expected: float | None) -> None:
    assert metrics.answerability_handled(answerability, status) == expected


def test_every_metric_has_a_documented_definition() -> None:
    docs = (Path(__file__).parents[3] / "docs" / "evals.md").read_text()
    for name in metrics.METRICS:
        assert f"`{name}`" in docs, name


class WordEmbedder:
    """Sentences as bags of words: cosine 1 for the same words, 0 for none shared."""

    is_ready = True
    dimensions = 64
    model_id = "words"

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().replace(".", "").split():
                rows[i, hash(word) % self.dimensions] = 1.0
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms == 0, 1, norms)


def test_reference_free_scores_by_hand() -> None:
    from keel.copilot.grounding import GroundingChecker

    checker = GroundingChecker(WordEmbedder(), semantic_threshold=0.99)
    reply = "Refunds take 14 days. Shipping is free worldwide."
    passages = [
        ("c1", "Refunds take 14 days after we receive the item."),
        ("c2", "Our office is open on weekdays."),
    ]
    scores = metrics.score_reference_free(checker, reply, passages)
    # One of two sentences is supported (by c1); one of two cited passages supports something.
    assert scores == {"groundedness": 0.5, "citation_precision": 0.5}
    # A wrong figure is not supported even with every word shared.
    assert metrics.score_reference_free(checker, "Refunds take 30 days.", passages[:1])["groundedness"] == 0.0
    assert metrics.score_reference_free(checker, reply, []) == {
        "groundedness": None,
        "citation_precision": None,
    }
