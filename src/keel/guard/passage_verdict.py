"""A retrieved passage's verdict from the rules' hits and the passage head's sentence scores: which
spans of it are instructions to the reader, and why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from keel.guard.injection_model import Head, candidate_rows
from keel.guard.injection_plan import _Plan, _sentence_spans, merged_spans, sentences_around, with_code_block
from keel.guard.injection_rules import RULE_SCORE


@dataclass(frozen=True)
class PassageVerdict:
    """A passage's verdict: `spans` are the (start, end) of the instructions found in it, in text order
    and not overlapping; `score` is its worst sentence's."""

    score: float
    is_injection: bool
    tier: Literal["rules", "classifier", "judge"]
    reason: str
    spans: tuple[tuple[int, int], ...] = ()


def passage_verdict(
    text: str,
    hits: list[tuple[str, int, int]],
    plan: _Plan,
    scoring: tuple[Head, npt.NDArray[np.float64], float] | None,
) -> PassageVerdict:
    """`hits` are the rules' (name, start, end); `scoring`, when the classifier runs, is the passage
    head, the vectors of the plan's pieces and the threshold a sentence is an instruction from."""
    sentences = _sentence_spans(text) if hits else []
    spans = sentences_around(sentences, [(start, end) for _, start, end in hits])
    score = RULE_SCORE if hits else 0.0
    if scoring is not None and plan.pieces:
        head, vectors, threshold = scoring
        candidates = candidate_rows(vectors, plan.pieces, plan.scored, plan.windows, include_windows=False)
        probabilities = head.probabilities(candidates.rows)
        for probability, piece in zip(probabilities, candidates.pieces, strict=True):
            if probability >= threshold:
                members = [piece] if piece >= 0 else [i for i, _ in plan.windows[-1 - piece]]
                spans.append((plan.spans[members[0]][0], plan.spans[members[-1]][1]))
        if not hits:
            score = float(np.max(probabilities)) if len(probabilities) else 0.0
    spans = merged_spans([(start, with_code_block(text, end)) for start, end in spans])
    tier: Literal["rules", "classifier"] = "rules" if hits else "classifier"
    if hits:
        reason = "rule " + ", ".join(dict.fromkeys(name for name, _, _ in hits))
    elif spans:
        reason = f"{len(spans)} instruction span(s), worst sentence scored {score:.2f}"
    else:
        reason = f"no instruction found (worst sentence scored {score:.2f})"
    return PassageVerdict(score, bool(spans), tier, reason, tuple(spans))
