"""What happens to a retrieved passage that holds an instruction to the reader (indirect injection): the
instruction's sentences are cut out and marked, and the rest of the passage stays usable; a passage with
too little left is dropped. The decision for each passage is recorded on the current trace span."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from opentelemetry import trace

from keel.guard.passage_verdict import PassageVerdict

# What the model reads where an instruction was cut out: it says that something was there, and why.
REMOVED = "[removed: text addressed to the assistant]"
# A neutralised passage with fewer words than this left, or less than this share of its characters, is
# dropped: what is left would be fragments around the marker.
MIN_WORDS_LEFT = 8
MIN_SHARE_LEFT = 0.3
_WORD = re.compile(r"\w+")

Action = Literal["kept", "neutralised", "dropped"]
Policy = Literal["neutralise", "drop", "off"]


@dataclass(frozen=True)
class ScreenedPassage:
    """A passage after screening: `text` is what may reach the prompt (None when dropped)."""

    text: str | None
    action: Action
    verdict: PassageVerdict | None


def neutralise(text: str, spans: tuple[tuple[int, int], ...]) -> str:
    """The text with each span replaced by REMOVED (spans in order, not overlapping)."""
    parts: list[str] = []
    last = 0
    for start, end in spans:
        parts += [text[last:start], REMOVED]
        last = end
    return "".join([*parts, text[last:]])


def _left(text: str, spans: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """Words and characters outside the spans."""
    kept = neutralise(text, spans).replace(REMOVED, " ")
    return len(_WORD.findall(kept)), len(kept.strip())


def decide(text: str, verdict: PassageVerdict, policy: Policy) -> ScreenedPassage:
    if policy == "off" or not verdict.is_injection:
        return ScreenedPassage(text, "kept", verdict)
    if policy == "drop":
        return ScreenedPassage(None, "dropped", verdict)
    words, chars = _left(text, verdict.spans)
    if words < MIN_WORDS_LEFT or chars < MIN_SHARE_LEFT * len(text.strip()):
        return ScreenedPassage(None, "dropped", verdict)
    return ScreenedPassage(neutralise(text, verdict.spans), "neutralised", verdict)


def record(screened: list[ScreenedPassage]) -> None:
    """The decisions on the current span: counts, and per passage its action, score and reason."""
    span = trace.get_current_span()
    span.set_attribute("keel.guard.sources_neutralised", sum(s.action == "neutralised" for s in screened))
    span.set_attribute("keel.guard.sources_dropped", sum(s.action == "dropped" for s in screened))
    span.set_attribute("keel.guard.source_actions", [s.action for s in screened])
    span.set_attribute("keel.guard.source_scores", [s.verdict.score if s.verdict else 0.0 for s in screened])
    span.set_attribute(
        "keel.guard.source_reasons",
        [s.verdict.reason if s.verdict and s.action != "kept" else "" for s in screened],
    )
