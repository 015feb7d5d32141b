"""Answer metrics that need no reference answer: groundedness and citation precision of a reply against
the passages it cites, judged by the copilot's own grounding check.

- groundedness: the share of the reply's sentences that one of its cited passages supports;
- citation precision: the share of its cited passages that support at least one of its sentences.

Both are None when there is nothing to judge (no cited passage, or no sentence that states anything).
"""

from __future__ import annotations

from dataclasses import dataclass

from keel.copilot.grounding import GroundingChecker, content_words, sentences


@dataclass(frozen=True)
class ReferenceFreeScores:
    groundedness: float | None
    citation_precision: float | None
    sentences: int
    citations: int


def reference_free_scores(
    checker: GroundingChecker, reply: str, cited: list[tuple[str, str]]
) -> ReferenceFreeScores:
    """`cited` holds (chunk_id, text) of each passage the reply cites, once each."""
    claims = [s for s in sentences(reply) if content_words(s)]
    if not cited or not claims:
        return ReferenceFreeScores(None, None, len(claims), len(cited))
    verdict = checker.check(reply, cited)
    # A passage that was the best support of some sentence supports the reply; the others may still
    # support a sentence another passage supported better, so each of those is checked on its own.
    supporting = set(verdict.supporting_chunks)
    for chunk_id, text in cited:
        if chunk_id not in supporting and any(
            s.supported for s in checker.check(reply, [(chunk_id, text)]).sentences
        ):
            supporting.add(chunk_id)
    precision = sum(chunk_id in supporting for chunk_id, _ in cited) / len(cited)
    return ReferenceFreeScores(verdict.supported_ratio, precision, len(claims), len(cited))
