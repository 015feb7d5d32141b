"""The fallback answer: the best cited extract from the knowledge base, quoted as it is written."""

from __future__ import annotations

from keel.copilot.grounding import content_words, sentences
from keel.knowledge.retrieval import SearchResult


def best_extract(question: str, source: SearchResult, max_sentences: int = 2) -> str:
    """The source's sentences that share most words with the question, in their original order."""
    wanted = content_words(question)
    candidates = sentences(source.text.replace("\n", " "))
    ranked = sorted(range(len(candidates)), key=lambda i: -len(wanted & content_words(candidates[i])))
    chosen = sorted(ranked[:max_sentences])
    return " ".join(candidates[i] for i in chosen)


def extract_reply(question: str, source: SearchResult) -> str:
    where = source.heading_path or source.title
    return f'From our help center ({where}): "{best_extract(question, source)}" A colleague will follow up.'
