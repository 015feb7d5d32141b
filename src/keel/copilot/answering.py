"""The reply's text and citations, chosen from what the steps produced: the customer's records when the
question is about them, the model's draft when the grounding check supports every sentence of it, the
answer composed from the passages' own sentences when they answer the question, and otherwise the best
cited extract, for a person to check. Every sentence of the reply is quoted by one of its citations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from keel.copilot.compose import Composition
from keel.copilot.extract import best_extract, extract_reply
from keel.copilot.grounding import GroundingVerdict, Passage
from keel.copilot.policy import ANSWER_EVIDENCE
from keel.copilot.tools.answers import RecordAnswer
from keel.copilot.types import Citation
from keel.knowledge.retrieval import SearchResult

Origin = Literal["records", "draft", "composed", "extract"]
# Help-centre sentences added to an answer from the customer's records ("you receive a tracking link").
_ALONGSIDE_RECORDS = 2


@dataclass(frozen=True)
class ChosenReply:
    text: str
    citations: list[Citation]
    grounded: float  # share of the reply's sentences its citations support
    # How surely the passages answer the question; None when the customer's records answer it.
    evidence: float | None
    origin: Origin
    # The model's draft was mostly unsupported and nothing else answered: the reply is an extract.
    ungrounded: bool = False


def passages_of(sources: list[SearchResult]) -> list[Passage]:
    """Sources as the grounding check reads them, each with the title and heading it sits under."""
    return [
        Passage(s.chunk_id, s.text, " ".join(part for part in (s.title, s.heading_path) if part))
        for s in sources
    ]


def choose_reply(
    question: str,
    sources: list[SearchResult],
    composition: Composition,
    records: RecordAnswer | None = None,
    draft: GroundingVerdict | None = None,
    draft_evidence: float | None = None,
) -> ChosenReply:
    """`draft` is the grounding verdict on the model's draft (None: no draft, or the model failed) and
    `draft_evidence` how surely it answers the question, on the composition's scale."""
    answers = composition.evidence >= ANSWER_EVIDENCE and bool(composition.sentences)
    if records is not None:
        extra = composition.sentences[:_ALONGSIDE_RECORDS] if answers else []
        knowledge = Composition(extra, composition.evidence)
        text = " ".join([records.text, knowledge.text]).strip()
        citations = records.citations + cite_composition(knowledge, sources)
        return ChosenReply(text, citations, 1.0, None, "records")
    if draft is not None and draft.fully_supported:
        # The model phrases what the passages say; it is never surer than their own best sentence.
        evidence = min(composition.evidence, draft_evidence or composition.evidence)
        return ChosenReply(draft.supported_text, cite_verdict(draft, sources), 1.0, evidence, "draft")
    if answers:
        return ChosenReply(
            composition.text, cite_composition(composition, sources), 1.0, composition.evidence, "composed"
        )
    # Nothing answers surely: what there is goes to a person.
    if draft is not None and draft.supported_ratio >= 0.5:
        return ChosenReply(
            draft.supported_text,
            cite_verdict(draft, sources),
            draft.supported_ratio,
            composition.evidence,
            "draft",
        )
    return extract(question, sources, composition, ungrounded=draft is not None)


def extract(
    question: str, sources: list[SearchResult], composition: Composition, *, ungrounded: bool = False
) -> ChosenReply:
    """The best cited extract: the composed sentences when there are some, else the top source's
    sentences closest to the question."""
    if composition.sentences:
        first = next(s for s in sources if s.chunk_id == composition.sentences[0].chunk_id)
        text = extract_reply(question, first, composition.text)
        citations = cite_composition(composition, sources)
    else:
        quote = best_extract(question, sources[0])
        text = extract_reply(question, sources[0], quote)
        citations = [_citation(sources[0], quote)]
    return ChosenReply(text, citations, 1.0, composition.evidence, "extract", ungrounded)


def cite_composition(composition: Composition, sources: list[SearchResult]) -> list[Citation]:
    by_id = {s.chunk_id: s for s in sources}
    return [_citation(by_id[chunk_id], quote) for chunk_id, quote in composition.quotes().items()]


def cite_verdict(verdict: GroundingVerdict, sources: list[SearchResult]) -> list[Citation]:
    """One citation per supporting passage, quoting the passage sentences that support the reply."""
    by_id = {s.chunk_id: s for s in sources}
    quotes: dict[str, list[str]] = {}
    for sentence in verdict.sentences:
        if sentence.supported and sentence.chunk_id in by_id:
            found = quotes.setdefault(sentence.chunk_id, [])
            if sentence.evidence and sentence.evidence not in found:
                found.append(sentence.evidence)
    return [_citation(by_id[chunk_id], " ".join(texts)) for chunk_id, texts in quotes.items()]


def _citation(source: SearchResult, quote: str) -> Citation:
    return Citation(
        chunk_id=source.chunk_id,
        document_id=source.document_id,
        title=source.title,
        source=source.source,
        quote=quote,
    )
