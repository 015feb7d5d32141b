"""How the injection classifier reads one text in a single embedding pass: its sentences (each longer
one cut into windows of its own) and its windows of 1,000 characters, composed from the sentences they
hold. Linear in the text, and bounded: a long text is read on MAX_WINDOWS windows spread over it."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

# MiniLM reads 256 tokens (~1,000 characters): a longer text is scored in windows, and scores its worst piece.
WINDOW_CHARS = 1000
WINDOW_OVERLAP = 200
# A longer text is classified on this many of its windows, spread from its start to its end (about 13 KB
# is read whole); the rules read every character of it.
MAX_WINDOWS = 16
# A text whose chosen windows hold more sentences than this (prose has about 15 a window; ". . . ." has
# 500) is read as its windows alone, so the embedding work per text stays bounded whatever the text.
MAX_PIECES = 32 * MAX_WINDOWS
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class _Plan:
    """How one text is classified from a single embedding pass: `pieces` are embedded once each; the
    pieces in `scored` are scored on their own, and each window, a list of (piece, characters of it
    inside the window), is scored as the overlap-weighted mean of its pieces' vectors (a stand-in for
    the window's own vector, which would cost a second pass). The text's probability is its worst score."""

    pieces: list[str]
    scored: list[int]
    windows: list[list[tuple[int, int]]]
    # (start, end) of each piece in the text, for neutralising a passage's pieces.
    spans: list[tuple[int, int]] = field(default_factory=list, compare=False)


def _window_starts(length: int) -> range:
    return range(0, max(1, length - WINDOW_OVERLAP), WINDOW_CHARS - WINDOW_OVERLAP)


def _windows(text: str) -> list[tuple[int, str]]:
    return [(start, text[start : start + WINDOW_CHARS]) for start in _window_starts(len(text))]


def _chosen(count: int) -> list[int]:
    """Which of `count` windows are scored: all of them up to MAX_WINDOWS, else MAX_WINDOWS spread evenly
    from the first to the last (an injection is most often at either end of a long text)."""
    if count <= MAX_WINDOWS:
        return list(range(count))
    return sorted({round(i * (count - 1) / (MAX_WINDOWS - 1)) for i in range(MAX_WINDOWS)})


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of the text's non-blank sentences, each longer one cut into windows of its own."""
    spans: list[tuple[int, int]] = []
    position = 0
    for separator in [*_SENTENCE_END.finditer(text), None]:
        end = len(text) if separator is None else separator.start()
        if text[position:end].strip():
            # A sentence longer than a window is read in windows of its own.
            spans += [
                (position + offset, min(end, position + offset + WINDOW_CHARS))
                for offset in _window_starts(end - position)
            ]
        if separator is not None:
            position = separator.end()
    return spans


def _plan(text: str, sentences: bool) -> _Plan:
    """Windows of the text; with `sentences`, a multi-sentence text is embedded sentence by sentence
    instead, its sentences of 4+ words scored alone (shorter ones score noise) and its windows composed
    from them — so an appended injection is not averaged away, at the cost of one pass over the text.

    Linear in the text: spans and windows both run left to right, so each window finds its sentences by
    bisection. A text of more than MAX_WINDOWS windows is classified on MAX_WINDOWS of them (and their
    sentences), which bounds the embedding work per text; the rules still read all of it."""
    starts = _window_starts(len(text))
    chosen = [starts[i] for i in _chosen(len(starts))]
    spans = _sentence_spans(text) if sentences else []
    if len(spans) <= 1:
        cuts = [(begin, min(len(text), begin + WINDOW_CHARS)) for begin in chosen]
        return _Plan([text[begin:end] for begin, end in cuts], list(range(len(chosen))), [], cuts)
    # Spans are ordered by start and, as they never nest, by end too.
    span_starts = [start for start, _ in spans]
    span_ends = [end for _, end in spans]
    used: dict[int, int] = {}  # span index -> piece index, in text order
    windows: list[list[tuple[int, int]]] = []
    for begin in chosen:
        finish = begin + WINDOW_CHARS
        first, last = bisect.bisect_right(span_ends, begin), bisect.bisect_left(span_starts, finish)
        group = [
            (used.setdefault(i, len(used)), min(span_ends[i], finish) - max(span_starts[i], begin))
            for i in range(first, last)
        ]
        if group:
            windows.append(group)
    if len(used) > MAX_PIECES:
        return _plan(text, sentences=False)
    cuts = [(span_starts[i], span_ends[i]) for i in used]
    pieces = [text[start:end] for start, end in cuts]
    scored = [piece for piece, text_piece in enumerate(pieces) if len(text_piece.split()) >= 4]
    return _Plan(pieces, scored, windows, cuts)


def merged_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def with_code_block(text: str, end: int) -> int:
    """An instruction followed by a fenced code block brings the block: it is what the instruction asks
    the reader to use. One bounded look ahead and one search for the closing fence."""
    following = text[end : end + 16]
    if not following.lstrip().startswith("```"):
        return end
    opening = text.index("```", end)
    closing = text.find("```", opening + 3)
    return len(text) if closing < 0 else closing + 3


def sentences_around(spans: list[tuple[int, int]], hits: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Each rule hit widened to the sentences it touches (`spans`: the text's sentences, in order)."""
    if not spans:
        return hits
    starts, ends = [s for s, _ in spans], [e for _, e in spans]
    widened = []
    for start, end in hits:
        first = min(bisect.bisect_right(ends, start), len(spans) - 1)
        last = max(bisect.bisect_left(starts, end) - 1, first)
        widened.append((min(start, starts[first]), max(end, ends[last])))
    return widened
