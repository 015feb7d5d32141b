"""The fallback answer: the best cited extract from the knowledge base, quoted as it is written (without
the page's navigation, labels or Markdown), for a person to check."""

from __future__ import annotations

from keel.copilot.text import is_furniture, passage_units, question_words
from keel.knowledge.retrieval import SearchResult


def best_extract(question: str, source: SearchResult, max_sentences: int = 2) -> str:
    """The source's sentences that share most words with the question, in their original order."""
    wanted = question_words(question)
    units = passage_units(source.text)
    candidates = [u for u in units if not is_furniture(u)] or units
    ranked = sorted(range(len(candidates)), key=lambda i: -len(wanted & question_words(candidates[i])))
    chosen = sorted(ranked[:max_sentences])
    return " ".join(candidates[i] for i in chosen)


def extract_reply(question: str, source: SearchResult, quote: str | None = None) -> str:
    """`quote`: the sentences to show (a composed answer the copilot is not sure of); by default the
    source's best extract."""
    where = source.heading_path or source.title
    shown = quote or best_extract(question, source)
    return f'From our help center ({where}): "{shown}" A colleague will follow up.'
