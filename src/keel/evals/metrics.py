"""Per-item evaluation metrics as pure functions, and the catalogue that names them.

Every metric scores one trial of one item; a score of None means "does not apply" (no reference answer,
no expected source, nothing cited) and leaves the item out of that metric's aggregate. Definitions are
written out in docs/evals.md.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from dataclasses import dataclass

import ir_measures
import numpy as np
from ir_measures import RR, Qrel, R, ScoredDoc, nDCG

from keel.copilot.grounding import GroundingChecker, content_words, sentences
from keel.stats import Aggregate


@dataclass(frozen=True)
class MetricSpec:
    name: str
    # "mean" of per-item scores, or a percentile of them (latency).
    aggregate: Aggregate
    higher_is_better: bool
    # Pass/fail per item (0 or 1): compared with McNemar's test.
    binary: bool
    description: str


RECALL_KS = (1, 5, 10)
NDCG_KS = (5, 10)

_SPECS = [
    *(
        MetricSpec(
            f"recall@{k}", "mean", True, False, f"share of expected sources in the first {k} retrieved"
        )
        for k in RECALL_KS
    ),
    MetricSpec("mrr", "mean", True, False, "1 / rank of the first expected source retrieved"),
    *(MetricSpec(f"ndcg@{k}", "mean", True, False, f"nDCG of the first {k} retrieved") for k in NDCG_KS),
    MetricSpec("answer_f1", "mean", True, False, "token F1 of the answer against the reference"),
    MetricSpec("answer_similarity", "mean", True, False, "embedding cosine of answer and reference"),
    MetricSpec("groundedness", "mean", True, False, "share of answer sentences its cited passages support"),
    MetricSpec("citation_precision", "mean", True, False, "share of cited passages that support a sentence"),
    MetricSpec("source_precision", "mean", True, False, "share of cited documents among the expected ones"),
    MetricSpec("answerability", "mean", True, True, "answered when answerable, declined or escalated if not"),
    MetricSpec("escalated", "mean", False, True, "escalated to a person (the mean is the escalation rate)"),
    MetricSpec("answered", "mean", True, True, "the reply reached the user (status answered)"),
    MetricSpec("top_score", "mean", True, False, "the best retrieved passage's vector cosine"),
    MetricSpec("judge_correctness", "mean", True, False, "LLM judge: agreement with the reference (0-1)"),
    MetricSpec("judge_faithfulness", "mean", True, False, "LLM judge: support by the cited passages (0-1)"),
    MetricSpec("latency_p50", "p50", False, False, "median seconds per item"),
    MetricSpec("latency_p95", "p95", False, False, "95th percentile of seconds per item"),
    MetricSpec("cost", "mean", False, False, "model cost per item (the currency of the price table)"),
]
METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in _SPECS}
# Metrics computed from one per-item value under another name: latency percentiles read "latency".
SOURCE_OF = {"latency_p50": "latency", "latency_p95": "latency"}


def source_of(metric: str) -> str:
    return SOURCE_OF.get(metric, metric)


# --- retrieval ---------------------------------------------------------------------------------------------

_MEASURES = [*(R @ k for k in RECALL_KS), RR, *(nDCG @ k for k in NDCG_KS)]
_NAMES = {**{str(R @ k): f"recall@{k}" for k in RECALL_KS}, str(RR): "mrr"} | {
    str(nDCG @ k): f"ndcg@{k}" for k in NDCG_KS
}


def retrieval_scores(ranked: list[str], expected: list[str]) -> dict[str, float | None]:
    """recall@k, MRR and nDCG@k of a ranked list of document labels against the expected ones
    (binary relevance), computed by trec_eval through ir-measures. No expected source: all None."""
    names = [*_NAMES.values()]
    relevant = list(dict.fromkeys(expected))
    if not relevant:
        return dict.fromkeys(names, None)
    ranking = list(dict.fromkeys(ranked))
    qrels = [Qrel("q", doc, 1) for doc in relevant]
    # Strictly falling scores keep the given order (trec_eval sorts by score, ties by document id).
    run = [ScoredDoc("q", doc, float(len(ranking) - i)) for i, doc in enumerate(ranking)]
    # trec_eval reports nothing for an empty ranking: every measure is then 0.
    scores: dict[str, float | None] = dict.fromkeys(names, 0.0)
    if run:
        for metric in ir_measures.iter_calc(_MEASURES, qrels, run):
            scores[_NAMES[str(metric.measure)]] = float(metric.value)
    return scores


def label_ranking(hits: list[tuple[str, str]], expected: list[str]) -> list[str]:
    """A ranking of (source, document id) pairs as labels: an expected source may name a document by
    its source as uploaded or by its id; anything else is labelled by its source."""
    wanted = set(expected)
    return [
        document_id if document_id in wanted and source not in wanted else source
        for source, document_id in hits
    ]


# --- answers -----------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def answer_f1(prediction: str, reference: str) -> float:
    """Token F1 between the normalised answer and reference (SQuAD); two empty texts score 1."""
    predicted, expected = normalise(prediction).split(), normalise(reference).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / norm) if norm else 0.0


def source_precision(cited_sources: list[str], expected: list[str]) -> float | None:
    """Share of the distinct documents cited that are expected; None without citations or expectations."""
    cited = list(dict.fromkeys(cited_sources))
    if not cited or not expected:
        return None
    wanted = set(expected)
    return sum(source in wanted for source in cited) / len(cited)


DECLINING = ("escalated", "needs_clarification")


def answerability_handled(answerability: str | None, status: str) -> float | None:
    """1 when an answerable (or partly answerable) item was answered, or an unanswerable or
    underspecified one was declined or escalated; 0 otherwise; None when the item does not say."""
    if answerability is None:
        return None
    declined = status in DECLINING
    return float(declined if answerability in ("unanswerable", "underspecified") else not declined)


def score_reference_free(
    checker: GroundingChecker, reply: str, cited: list[tuple[str, str]]
) -> dict[str, float | None]:
    """The metrics that need no reference, for offline runs and live scoring alike, of a reply against
    the (chunk_id, text) passages it cites, judged by the copilot's own grounding check:

    - groundedness: the share of the reply's sentences that one of its cited passages supports;
    - citation_precision: the share of cited passages that support at least one of its sentences.

    Both None when there is nothing to judge (no cited passage, or no sentence that states anything).
    """
    claims = [s for s in sentences(reply) if content_words(s)]
    if not cited or not claims:
        return {"groundedness": None, "citation_precision": None}
    verdict = checker.check(reply, cited)
    # The best support of some sentence supports the reply; any other passage may still support a
    # sentence another passage supported better, so each of those is checked on its own.
    supporting = set(verdict.supporting_chunks)
    for chunk_id, text in cited:
        if chunk_id not in supporting and any(
            s.supported for s in checker.check(reply, [(chunk_id, text)]).sentences
        ):
            supporting.add(chunk_id)
    precision = sum(chunk_id in supporting for chunk_id, _ in cited) / len(cited)
    return {"groundedness": verdict.supported_ratio, "citation_precision": precision}


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default), q in 0..100; NaN for no values."""
    return float(np.percentile(values, q)) if values else math.nan
