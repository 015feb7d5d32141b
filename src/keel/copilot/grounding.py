"""The grounding check: every sentence of a reply must be supported by one of the passages it cites.

A sentence is supported when enough of its content words appear in a passage (lexical support) or its
embedding is close to one of the passage's sentences (semantic support), and every number it states
appears in that passage: a wrong price, period or order number is the most harmful hallucination. The
passage sentence closest to the claim must also agree with it in polarity: "the frame is not covered"
shares every word with "the frame is covered", and says the opposite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from keel.gateway.providers.base import EmbeddingProvider

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_WORD = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)?")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
_STOP_WORDS = """a an and are as at be been but by can do does for from has have i if in into is it its me my
no not of on or our so than that the their them then there these they this to up us was we were what when
which who will with you your yes please thanks"""
_STOP = frozenset(_STOP_WORDS.split())


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def content_words(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP}


def _stem(word: str) -> str:
    # Enough to match "charges"/"charge", "days"/"day"; not a linguistic stemmer.
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


_NEGATION = re.compile(
    r"\b(?:not|no|never|none|cannot|can't|won't|isn't|aren't|doesn't|don't|didn't|without)\b", re.I
)


def negated(text: str) -> bool:
    return bool(_NEGATION.search(text))


def numbers(text: str) -> set[str]:
    return {n.replace(",", ".") for n in _NUMBER.findall(text)}


@dataclass(frozen=True)
class SentenceSupport:
    sentence: str
    supported: bool
    chunk_id: str | None
    lexical: float
    semantic: float


@dataclass(frozen=True)
class GroundingVerdict:
    sentences: list[SentenceSupport]

    @property
    def supported_ratio(self) -> float:
        return sum(s.supported for s in self.sentences) / len(self.sentences) if self.sentences else 0.0

    @property
    def supported_text(self) -> str:
        return " ".join(s.sentence for s in self.sentences if s.supported)

    @property
    def supporting_chunks(self) -> list[str]:
        return list(dict.fromkeys(s.chunk_id for s in self.sentences if s.supported and s.chunk_id))


class GroundingChecker:
    def __init__(
        self, embedder: EmbeddingProvider, lexical_threshold: float = 0.6, semantic_threshold: float = 0.75
    ) -> None:
        self._embedder = embedder
        self._lexical_threshold = lexical_threshold
        self._semantic_threshold = semantic_threshold

    def check(self, reply: str, passages: list[tuple[str, str]]) -> GroundingVerdict:
        """`passages` are (chunk_id, text) pairs: the sources the reply may rest on."""
        # A "sentence" without a content word ("][", "OK.") states nothing a source could support.
        claims = [s for s in sentences(reply) if content_words(s)]
        if not claims or not passages:
            return GroundingVerdict([SentenceSupport(c, False, None, 0.0, 0.0) for c in claims])
        passage_sentences = [(chunk_id, s) for chunk_id, text in passages for s in sentences(text)]
        vectors = self._embedder.embed(claims + [s for _, s in passage_sentences])
        claim_vectors, source_vectors = vectors[: len(claims)], vectors[len(claims) :]
        similarity = claim_vectors @ source_vectors.T
        verdicts = []
        for i, claim in enumerate(claims):
            words, figures = content_words(claim), numbers(claim)
            best: SentenceSupport = SentenceSupport(claim, False, None, 0.0, 0.0)
            for chunk_id, text in passages:
                lexical = len(words & content_words(text)) / len(words)
                rows = [j for j, (owner, _) in enumerate(passage_sentences) if owner == chunk_id]
                semantic = float(np.max(similarity[i, rows])) if rows else 0.0
                closest = max(
                    (ps for owner, ps in passage_sentences if owner == chunk_id),
                    key=lambda ps: len(words & content_words(ps)),
                    default=text,
                )
                supported = (
                    (lexical >= self._lexical_threshold or semantic >= self._semantic_threshold)
                    and figures <= numbers(text)
                    and negated(claim) == negated(closest)
                )
                if (supported, lexical + semantic) > (best.supported, best.lexical + best.semantic):
                    best = SentenceSupport(claim, supported, chunk_id, lexical, semantic)
            verdicts.append(best)
        return GroundingVerdict(verdicts)
