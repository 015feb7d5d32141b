"""Extractive composition: the answer built from the retrieved passages' own sentences.

Every sentence of every retrieved passage (page navigation and labels left out) is scored against the
question by the local embedding model and by the question's words it contains, weighted by how rare each
word is among the candidates, with a bonus when it holds what the question asks for (a period for "how
long", an amount for "how much", a phone number for "what number"). A sentence that is itself a question
(an FAQ's) hands its score to the sentence that answers it. The best sentence, a few close runners-up and
the sentence a pronoun refers back to make the answer; each carries the passage it came from.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass

from keel.copilot.text import contacts, is_furniture, passage_units, question_words
from keel.copilot.vectors import SentenceVectors
from keel.knowledge.retrieval import SearchResult

_REFERS_BACK = re.compile(r"^(?:it|this|that|these|those|they|such|he|she|its|their)\b", re.I)
_DURATION = re.compile(
    r"\b\d+(?:[.,]\d+)?\s*(?:-|\u2013|to)?\s*\d*\s*(?:working |business |calendar )?"
    r"(?:minutes?|hours?|days?|weeks?|months?|years?)\b",
    re.I,
)
_MONEY = re.compile(
    r"[$\u20ac\u00a3]\s*\d|\b\d[\d.,]*\s*(?:dollars?|euros?|eur|usd)\b|\bfree\b|\bfees?\b", re.I
)
_TIME = re.compile(
    r"\b(?:\d{1,2}[:.]\d{2}|\d{1,2}\s*(?:a\.?m\.?|p\.?m\.?)|monday|tuesday|wednesday|thursday|friday|"
    r"saturday|sunday|january|february|march|april|may|june|july|august|september|october|november|"
    r"december|\d{4})\b",
    re.I,
)
# What a question asks for, and how a sentence that holds it looks.
_ASKS: list[tuple[re.Pattern[str], re.Pattern[str] | None]] = [
    (re.compile(r"\bhow (?:long|many days|many weeks|soon|quickly)\b", re.I), _DURATION),
    (re.compile(r"\bhow (?:much|expensive)\b|\b(?:cost|price|fee|charge)s?\b", re.I), _MONEY),
    (re.compile(r"\b(?:when|what time|which day|deadline|opening hours|open)\b", re.I), _TIME),
    (re.compile(r"\bhow many\b", re.I), re.compile(r"\d")),
    (re.compile(r"\b(?:phone|call|number|e-?mail|contact|website|link|address)\b", re.I), None),
]
_DEFINITION_QUESTION = re.compile(
    r"^(?:(?:so|and|ok|okay|then)[, ]+)?(?:what|who)\s+(?:is|are|was|were)\s+"
    r"(?:the\s+|a\s+|an\s+)?(.+?)[?.!]*$",
    re.I,
)
_COPULAS = frozenset(["is", "are", "was", "were", "means", "refers", "includes", "consists", "describes"])
_WORDS_MIN, _WORDS_MAX = 4, 90
_OVERLAPPING = frozenset({"text", "pdf", "html"})
_ENDINGS = frozenset(".!?:;)\"\u201d'\u2019")
SEMANTIC_WEIGHT, LEXICAL_WEIGHT, KIND_BONUS = 0.7, 0.3, 0.08


@dataclass(frozen=True)
class ComposedSentence:
    text: str
    chunk_id: str
    source_rank: int  # the passage's place in the retrieval results
    position: int  # the sentence's place in its passage
    score: float


@dataclass(frozen=True)
class Composition:
    sentences: list[ComposedSentence]
    # The best sentence's score: how surely the passages answer the question (0 when nothing does).
    evidence: float
    # The best-scored sentences of all passages, in reading order: what a model is given to write from.
    context: tuple[ComposedSentence, ...] = ()

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)

    def quotes(self) -> dict[str, str]:
        """Per passage, the sentences taken from it: what each citation quotes."""
        grouped: dict[str, list[str]] = {}
        for sentence in self.sentences:
            grouped.setdefault(sentence.chunk_id, []).append(sentence.text)
        return {chunk_id: " ".join(texts) for chunk_id, texts in grouped.items()}


@dataclass(frozen=True)
class _Candidate:
    rank: int
    position: int
    text: str
    words: frozenset[str]


class Composer:
    def __init__(
        self,
        vectors: SentenceVectors,
        max_sentences: int = 3,
        max_chars: int = 500,
        context_sentences: int = 8,
    ) -> None:
        self._vectors = vectors
        self._max_sentences = max_sentences
        self._max_chars = max_chars
        self._context_sentences = context_sentences

    def compose(self, question: str, sources: list[SearchResult]) -> Composition:
        candidates = [
            _Candidate(rank, position, text, frozenset(question_words(text)))
            for rank, source in enumerate(sources)
            for position, text in _answer_units(source)
        ]
        if not candidates:
            return Composition([], 0.0)
        vectors = self._vectors.embed([question] + [c.text for c in candidates])
        semantic = vectors[1:] @ vectors[0]
        scores = [
            SEMANTIC_WEIGHT * float(semantic[i]) + LEXICAL_WEIGHT * lexical + _kind_bonus(question, c.text)
            for i, (c, lexical) in enumerate(zip(candidates, _lexical(question, candidates), strict=True))
        ]
        scores = _answers_take_over(candidates, scores)
        # A question on the page is never the answer: it has handed its score to the sentence after it.
        order = sorted(
            (i for i, c in enumerate(candidates) if not c.text.endswith("?")), key=lambda i: -scores[i]
        )
        if not order:
            return Composition([], 0.0)
        best = order[0]
        chosen = [best]
        length = len(candidates[best].text)
        after = best + 1
        if (
            after < len(candidates)
            and (candidates[after].rank, candidates[after].position)
            == (candidates[best].rank, candidates[best].position + 1)
            and scores[after] >= 0.6 * scores[best]
            and not candidates[after].text.endswith("?")
        ):
            # What the page says next usually completes the answer ("There are four ways: ...").
            chosen.append(after)
            length += len(candidates[after].text)
        for i in order[1:]:
            if i in chosen:
                continue
            if len(chosen) >= self._max_sentences or scores[i] < 0.85 * scores[best]:
                break
            if length + len(candidates[i].text) > self._max_chars:
                continue
            if any(float(vectors[i + 1] @ vectors[j + 1]) > 0.9 for j in chosen):
                continue  # says again what a chosen sentence says
            chosen.append(i)
            length += len(candidates[i].text)
        chosen = _with_list_items(candidates, _with_antecedents(candidates, chosen), self._max_chars)

        def sentence(i: int) -> ComposedSentence:
            c = candidates[i]
            text = c.text if c.text[-1] in _ENDINGS else f"{c.text}."  # a list item or label ends here
            return ComposedSentence(text, sources[c.rank].chunk_id, c.rank, c.position, round(scores[i], 4))

        def reading(indices: list[int]) -> list[int]:
            return sorted(indices, key=lambda i: (candidates[i].rank, candidates[i].position))

        context = tuple(sentence(i) for i in reading(order[: self._context_sentences]))
        # Empty when the best sentence only announced a list that is not there: nothing to say surely.
        return Composition([sentence(i) for i in reading(chosen)], round(scores[best], 4), context)

    def evidence(self, question: str, texts: list[str]) -> float:
        """How surely the best of `texts` (a model's draft) answers `question`, on the composition's scale."""
        candidates = [_Candidate(0, i, t, frozenset(question_words(t))) for i, t in enumerate(texts)]
        if not candidates:
            return 0.0
        vectors = self._vectors.embed([question, *texts])
        semantic = vectors[1:] @ vectors[0]
        lexical = _lexical(question, candidates)
        return round(
            max(
                SEMANTIC_WEIGHT * float(semantic[i]) + LEXICAL_WEIGHT * lexical[i] + _kind_bonus(question, t)
                for i, t in enumerate(texts)
            ),
            4,
        )


def _answer_units(source: SearchResult) -> list[tuple[int, str]]:
    """The passage's sentences that could be an answer, with their positions: no navigation or labels,
    no sentence clipped where the chunk was cut."""
    units = passage_units(source.text)
    kept = []
    listing = False  # inside the items of a list a sentence announced ("Examples are:")
    for position, text in enumerate(units):
        words = len(text.split())
        item = listing and words >= 1
        listing = text.endswith(":") or (item and words < _WORDS_MIN * 3)
        if not item and (not _WORDS_MIN <= words <= _WORDS_MAX or is_furniture(text)):
            continue
        # Text chunks after the first repeat the end of the one before, from a word, not a sentence.
        if position == 0 and source.ordinal > 0 and source.doc_type in _OVERLAPPING:
            continue
        if position == len(units) - 1 and text[-1] not in _ENDINGS and not item:
            continue  # the chunk was cut inside this sentence
        kept.append((position, text))
    return kept


def _lexical(question: str, candidates: list[_Candidate]) -> list[float]:
    """Share of the question's words a sentence holds, each weighted by how rare it is among the
    candidates (a word every sentence has tells them apart least)."""
    wanted = question_words(question)
    if not wanted:
        return [0.0] * len(candidates)
    frequency = Counter(w for c in candidates for w in c.words & wanted)
    count = len(candidates)
    weights = {w: 1.0 + math.log((count + 1) / (frequency[w] + 1)) for w in wanted}
    total = sum(weights.values())
    return [sum(weights[w] for w in c.words & wanted) / total for c in candidates]


def _kind_bonus(question: str, sentence: str) -> float:
    defined = _DEFINITION_QUESTION.match(question.strip())
    if defined:
        # "What is a safe room?": the sentence that says what a safe room is ("A safe room ... is").
        subject = question_words(defined.group(1))
        opening = sentence.split()[:12]
        said = question_words(" ".join(opening[:8]))
        copula = any(w.lower().strip(",") in _COPULAS for w in opening)
        return KIND_BONUS if subject and subject <= said and copula else 0.0
    for asks, holds in _ASKS:
        if asks.search(question):
            found = holds.search(sentence) if holds is not None else bool(contacts(sentence))
            return KIND_BONUS if found else 0.0
    return 0.0


def _answers_take_over(candidates: list[_Candidate], scores: list[float]) -> list[float]:
    """An FAQ's question matches a question best, but its answer is the sentence after it."""
    lifted = list(scores)
    for i, candidate in enumerate(candidates[:-1]):
        following = candidates[i + 1]
        if candidate.text.endswith("?") and (following.rank, following.position) == (
            candidate.rank,
            candidate.position + 1,
        ):
            lifted[i + 1] = max(lifted[i + 1], scores[i])
    return lifted


def _with_list_items(candidates: list[_Candidate], chosen: list[int], max_chars: int) -> list[int]:
    """A sentence announcing a list ("Examples are:") brings the items after it, as many as fit; with none
    after it, it says nothing and goes."""
    result = list(chosen)
    for i in chosen:
        if not candidates[i].text.endswith(":"):
            continue
        length = sum(len(candidates[j].text) for j in result)
        following = i + 1
        while (
            following < len(candidates)
            and (candidates[following].rank, candidates[following].position)
            == (candidates[i].rank, candidates[i].position + following - i)
            and length + len(candidates[following].text) <= max_chars
        ):
            if following not in result:
                result.append(following)
                length += len(candidates[following].text)
            following += 1
        if following == i + 1:
            result.remove(i)
    return result


def _with_antecedents(candidates: list[_Candidate], chosen: list[int]) -> list[int]:
    """A sentence opening with "It" or "This" keeps the sentence before it, which says what it is."""
    result = list(chosen)
    for i in chosen:
        candidate = candidates[i]
        if i > 0 and _REFERS_BACK.match(candidate.text) and i - 1 not in result:
            previous = candidates[i - 1]
            adjacent = (previous.rank, previous.position) == (candidate.rank, candidate.position - 1)
            if adjacent and not previous.text.endswith("?"):
                result.append(i - 1)
    return result


def focus(sources: list[SearchResult], composition: Composition) -> list[SearchResult]:
    """The sources cut down to their best-scored sentences, for a model's prompt: a few hundred tokens
    instead of a few thousand, and the sentences a reply can be grounded in."""
    kept: dict[str, list[str]] = {}
    for sentence in composition.context:
        kept.setdefault(sentence.chunk_id, []).append(sentence.text)
    if not kept:
        return sources
    return [s.model_copy(update={"text": " ".join(kept[s.chunk_id])}) for s in sources if s.chunk_id in kept]
