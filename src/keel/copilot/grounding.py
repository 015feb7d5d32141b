"""The grounding check: every sentence of a reply must be supported by the passages it cites, in place.

A claim is supported by one passage sentence, or two adjacent ones, that share enough of its content
words (lexical support) or whose embedding is close to it (semantic support), and that also:
- state every number and code of the claim, each in a sentence that shares the words around it in the
  claim ("4.5 hours" must sit with "charge", not with another figure's subject): a number bound to the
  wrong thing is the most harmful hallucination;
- name every person, place, nationality, office or programme the claim names (or the passage's title
  does), so a swapped name or nationality fails;
- agree in polarity ("the frame is not covered" shares every word with "the frame is covered");
- for a yes/no verdict ("Yes, ...", "No."), settle it in one sentence: the proposition (or, for a bare
  "Yes.", the question) is stated there with the polarity the verdict claims.
Links, e-mail addresses and phone numbers must appear in a cited passage. Sentences left as fragments
once their neighbours are dropped (a list announced with a colon, a phone number announced and then
missing, "This means ..." after a dropped sentence) are dropped too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from keel.copilot.text import (
    canonical_number,
    contacts,
    content_words,
    name_tokens,
    names,
    negated,
    numbers,
    passage_units,
    question_words,
    sentences,
    word_tokens,
)
from keel.gateway.providers.base import EmbeddingProvider

__all__ = [
    "GroundingChecker",
    "GroundingVerdict",
    "Passage",
    "SentenceSupport",
    "content_words",
    "negated",
    "numbers",
    "sentences",
]

_VERDICT = re.compile(r"^\s*(yes|no)\b[\s,.!;:\u2014\u2013-]*", re.I)
_YES_NO_QUESTION = re.compile(
    r"^\s*(?:(?:so|and|but|ok|okay|well)[, ]+)?(?:is|are|am|was|were|can|could|do|does|did|will|would|"
    r"should|shall|may|might|must|has|have|had|isn't|aren't|can't|don't|doesn't|won't)\b",
    re.I,
)
_BACK_REFERENCE = re.compile(
    r"^(?:this|that|these|those|it|they|such|however|also|but|so|therefore|then|otherwise|"
    r"in addition|additionally|furthermore|moreover|as a result|for example|for instance)\b",
    re.I,
)
_ANNOUNCES_CONTACT = re.compile(
    r"\b(?:call|phone|telephone|e-?mail|contact|reach|visit|website|web site|link|number|address)\b", re.I
)
# A sentence that ends pointing at what comes next ("... the number below.", "... as follows:").
_POINTS_ON = re.compile(r"(?:\b(?:below|the following|as follows|here)|:)\s*[.!]?\s*$", re.I)
# Words around a number or code in a claim that must sit with it in the passage sentence stating it.
_ROLE_SPAN = 3
_NAME_SPAN = 5


@dataclass(frozen=True)
class Passage:
    chunk_id: str
    text: str
    # Title and heading path: what a passage is about, though its sentences may only say "it".
    title: str = ""


@dataclass(frozen=True)
class SentenceSupport:
    sentence: str
    supported: bool
    chunk_id: str | None
    lexical: float
    semantic: float
    # The passage sentence(s) that support it; why not, when it is not supported.
    evidence: str = ""
    problem: str | None = None


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

    @property
    def fully_supported(self) -> bool:
        return bool(self.sentences) and all(s.supported for s in self.sentences)


@dataclass(frozen=True)
class _Unit:
    chunk_id: str
    index: int  # position among the passage's units
    text: str
    words: frozenset[str]
    figures: frozenset[str]
    lowered: frozenset[str]  # every word token, for names


@dataclass(frozen=True)
class _Claim:
    text: str
    core: str  # without a leading yes/no
    verdict: str | None  # "yes", "no" or None
    words: frozenset[str]
    figures: frozenset[str]
    names: frozenset[str]
    contacts: frozenset[str]
    tokens: tuple[str, ...]


class GroundingChecker:
    def __init__(
        self, embedder: EmbeddingProvider, lexical_threshold: float = 0.6, semantic_threshold: float = 0.75
    ) -> None:
        self.embedder = embedder
        self._lexical_threshold = lexical_threshold
        self._semantic_threshold = semantic_threshold

    def check(
        self,
        reply: str,
        passages: list[Passage] | list[tuple[str, str]],
        question: str | None = None,
    ) -> GroundingVerdict:
        """`passages` are the sources the reply may rest on; `question` settles a bare "Yes." or "No."."""
        given = [p if isinstance(p, Passage) else Passage(p[0], p[1]) for p in passages]
        claims = [_claim(s) for s in sentences(reply)]
        # A "sentence" without a content word ("][", "OK.") states nothing a source could support.
        claims = [c for c in claims if c.words or c.verdict]
        if not claims or not given:
            return GroundingVerdict([SentenceSupport(c.text, False, None, 0.0, 0.0) for c in claims])
        units = [
            _unit(p.chunk_id, i, text)
            for p in given
            for i, text in enumerate(passage_units(p.text) or [p.text.strip()])
            if text
        ]
        vectors = self.embedder.embed([c.core or c.text for c in claims] + [u.text for u in units])
        similarity: npt.NDArray[np.float32] = vectors[: len(claims)] @ vectors[len(claims) :].T
        chunk_contacts = {p.chunk_id: contacts(p.text) for p in given}
        titles = {p.chunk_id: name_tokens(p.title) for p in given}
        verdicts = [
            self._support(claim, similarity[i], units, chunk_contacts, titles, question)
            for i, claim in enumerate(claims)
        ]
        return GroundingVerdict(_without_fragments(verdicts))

    def _support(
        self,
        claim: _Claim,
        similarity: npt.NDArray[np.float32],
        units: list[_Unit],
        chunk_contacts: dict[str, set[str]],
        titles: dict[str, frozenset[str]],
        question: str | None,
    ) -> SentenceSupport:
        best = SentenceSupport(claim.text, False, None, 0.0, 0.0, problem="unsupported")
        if claim.verdict and len(claim.words) < 2:
            return self._bare_verdict(claim, similarity, units, question)
        for indices in _windows(units):
            window = tuple(units[j] for j in indices)
            chunk_id = window[0].chunk_id
            covered = claim.words & frozenset().union(*(u.words for u in window))
            lexical = len(covered) / len(claim.words) if claim.words else 0.0
            semantic = max(float(similarity[j]) for j in indices)
            close = lexical >= self._lexical_threshold or semantic >= self._semantic_threshold
            if claim.verdict:  # a verdict is settled in one sentence, all but stated there
                close = len(window) == 1 and (lexical >= 0.75 or (semantic >= 0.8 and lexical >= 0.5))
            problem = "unsupported" if not close else self._mismatch(claim, window, chunk_contacts, titles)
            candidate = SentenceSupport(
                claim.text,
                problem is None,
                chunk_id,
                lexical,
                semantic,
                " ".join(u.text for u in window),
                problem,
            )
            if (candidate.supported, lexical + semantic) > (best.supported, best.lexical + best.semantic):
                best = candidate
        return best

    def _mismatch(
        self,
        claim: _Claim,
        window: tuple[_Unit, ...],
        chunk_contacts: dict[str, set[str]],
        titles: dict[str, frozenset[str]],
    ) -> str | None:
        """What the close passage sentences contradict or leave out, or None."""
        chunk_id = window[0].chunk_id
        if not claim.figures <= frozenset().union(*(u.figures for u in window)):
            return "number"
        if not _anchors_bound(claim, window):
            return "number"
        known = frozenset().union(*(u.lowered for u in window)) | titles.get(chunk_id, frozenset())
        if not claim.names <= known:
            return "name"
        if not claim.contacts <= chunk_contacts.get(chunk_id, set()):
            return "contact"
        closest = max(window, key=lambda u: len(claim.words & u.words))
        if negated(claim.core or claim.text) != negated(closest.text):
            return "polarity"
        return None

    def _bare_verdict(
        self,
        claim: _Claim,
        similarity: npt.NDArray[np.float32],
        units: list[_Unit],
        question: str | None,
    ) -> SentenceSupport:
        """ "Yes." or "No, you can't." rests on the question: one passage sentence must state what was
        asked, with the polarity the verdict gives it."""
        if not question:
            return SentenceSupport(claim.text, False, None, 0.0, 0.0, problem="yes_no")
        asked = question_words(question) or content_words(question)
        expected_negated = negated(question) != (claim.verdict == "no")
        best = SentenceSupport(claim.text, False, None, 0.0, 0.0, problem="yes_no")
        for j, unit in enumerate(units):
            lexical = len(asked & unit.words) / len(asked) if asked else 0.0
            if lexical > best.lexical:
                settled = lexical >= 0.75 and negated(unit.text) == expected_negated
                best = SentenceSupport(
                    claim.text,
                    settled,
                    unit.chunk_id,
                    lexical,
                    float(similarity[j]),
                    unit.text,
                    None if settled else "yes_no",
                )
        return best


def _claim(text: str) -> _Claim:
    match = _VERDICT.match(text)
    core = text[match.end() :].strip() if match else text
    return _Claim(
        text=text,
        core=core,
        verdict=match.group(1).lower() if match else None,
        words=frozenset(content_words(core)),
        figures=frozenset(numbers(core)),
        names=frozenset(names(core if not match else f"So {core}")),
        contacts=frozenset(contacts(core)),
        tokens=tuple(word_tokens(core)),
    )


def _unit(chunk_id: str, index: int, text: str) -> _Unit:
    return _Unit(
        chunk_id,
        index,
        text,
        frozenset(content_words(text)),
        frozenset(numbers(text)),
        name_tokens(text),
    )


def _windows(units: list[_Unit]) -> list[tuple[int, ...]]:
    """Each sentence alone, and each pair of neighbouring sentences of one passage (by position)."""
    windows: list[tuple[int, ...]] = [(j,) for j in range(len(units))]
    windows += [(j, j + 1) for j in range(len(units) - 1) if units[j].chunk_id == units[j + 1].chunk_id]
    return windows


def _anchors_bound(claim: _Claim, window: tuple[_Unit, ...]) -> bool:
    """Every number and code of the claim sits, in one passage sentence, with at least a third of the
    words around it in the claim, and with every name near it."""
    for position, token in enumerate(claim.tokens):
        is_figure = token[0].isdigit() and canonical_number(token) in claim.figures
        is_code = token in claim.names and any(c.isdigit() for c in token)
        if not (is_figure or is_code):
            continue
        anchor = canonical_number(token) if is_figure else token
        around = claim.tokens[max(0, position - _ROLE_SPAN) : position + _ROLE_SPAN + 1]
        role = {w for w in content_words(" ".join(around)) if not w[0].isdigit() and w != token}
        near = claim.tokens[max(0, position - _NAME_SPAN) : position + _NAME_SPAN + 1]
        near_names = {t for t in near if t in claim.names and t != token}
        holders = [u for u in window if (anchor in u.figures if is_figure else anchor in u.lowered)]
        if not any(
            near_names <= u.lowered and (not role or len(role & u.words) * 3 >= len(role)) for u in holders
        ):
            return False
    return True


def _without_fragments(verdicts: list[SentenceSupport]) -> list[SentenceSupport]:
    """Drops what a dropped neighbour leaves dangling: a sentence announcing what follows (a colon, "the
    number below") when what follows is gone, and one referring back ("This means ...") to a dropped one."""
    kept = list(verdicts)
    for i, verdict in enumerate(kept):
        if not verdict.supported:
            continue
        text = verdict.sentence.strip()
        after = kept[i + 1] if i + 1 < len(kept) else None
        before = kept[i - 1] if i > 0 else None
        announces = bool(_POINTS_ON.search(text)) or (
            bool(_ANNOUNCES_CONTACT.search(text)) and not contacts(text) and text.endswith(":")
        )
        dangling = announces and (after is None or not after.supported)
        orphaned = bool(_BACK_REFERENCE.match(text)) and before is not None and not before.supported
        if dangling or orphaned:
            kept[i] = SentenceSupport(
                verdict.sentence,
                False,
                verdict.chunk_id,
                verdict.lexical,
                verdict.semantic,
                verdict.evidence,
                "fragment",
            )
    return kept
