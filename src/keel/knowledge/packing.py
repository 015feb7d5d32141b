"""Fits the best chunks into a token budget: drop near-duplicates, merge neighbours, trim the last one."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

_WORDS = re.compile(r"\w+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
NEAR_DUPLICATE = 0.9


@dataclass(frozen=True)
class PackInput:
    chunk_id: str
    document_id: str
    ordinal: int
    text: str


@dataclass(frozen=True)
class Passage:
    chunk_ids: list[str]
    document_id: str
    text: str
    tokens: int
    trimmed: bool = False


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _WORDS.findall(text.lower())
    return {tuple(words[i : i + 3]) for i in range(max(1, len(words) - 2))}


def _similar(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> bool:
    return bool(a and b) and len(a & b) / len(a | b) >= NEAR_DUPLICATE


def pack(chunks: list[PackInput], budget: int, count_tokens: Callable[[str], int]) -> list[Passage]:
    """`chunks` come best first; passages keep that order, with neighbours of one document merged."""
    kept: list[PackInput] = []
    seen: list[set[tuple[str, ...]]] = []
    for chunk in chunks:
        shingles = _shingles(chunk.text)
        if any(_similar(shingles, other) for other in seen):
            continue
        kept.append(chunk)
        seen.append(shingles)

    groups: list[list[PackInput]] = []
    for chunk in kept:
        neighbour = next(
            (
                g
                for g in groups
                if g[0].document_id == chunk.document_id
                and any(abs(c.ordinal - chunk.ordinal) == 1 for c in g)
            ),
            None,
        )
        if neighbour is None:
            groups.append([chunk])
        else:
            neighbour.append(chunk)

    passages: list[Passage] = []
    remaining = budget
    for group in groups:
        ordered = sorted(group, key=lambda c: c.ordinal)
        text = "\n".join(c.text for c in ordered)
        tokens = count_tokens(text)
        trimmed = False
        if tokens > remaining:
            text, tokens = _trim(text, remaining, count_tokens)
            trimmed = True
        if not text:
            break
        passages.append(Passage([c.chunk_id for c in ordered], ordered[0].document_id, text, tokens, trimmed))
        remaining -= tokens
        if remaining <= 0:
            break
    return passages


def _trim(text: str, budget: int, count_tokens: Callable[[str], int]) -> tuple[str, int]:
    """The longest run of whole leading sentences that fits."""
    kept = ""
    for sentence in _SENTENCE_END.split(text):
        candidate = f"{kept} {sentence}".strip()
        if count_tokens(candidate) > budget:
            break
        kept = candidate
    return kept, count_tokens(kept) if kept else 0
