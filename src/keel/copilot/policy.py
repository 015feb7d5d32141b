"""Confidence and escalation: how sure the copilot is, and when a person must look first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from keel.config import CopilotSettings

_AMOUNT = re.compile(r"(?:€|eur|euros?|\$|usd)\s*(\d[\d.,]*)|(\d[\d.,]*)\s*(?:€|eur|euros?|\$|usd)", re.I)


# The composed answer's evidence (compose.py's score of the best sentence) at which the passages are
# taken to answer the question. Set on the first half of MTRAG's govt tasks: the unanswerable questions'
# best sentences scored below 0.45 but one, the answerable ones' mostly above (bench/copilot_mtrag.py).
ANSWER_EVIDENCE = 0.47
_ASKS_FOR_PERSON = re.compile(
    r"\b(?:human|person|people|agent|someone|somebody|representative|operator|colleague|staff|employee|"
    r"manager|supervisor|real|bot|call me|phone me|ring me|speak|talk)\b",
    re.I,
)


@dataclass(frozen=True)
class Signals:
    """What the pipeline learned, each in [0, 1]."""

    relevance: float  # how close the best source is to the question
    grounded: float  # share of the reply's sentences supported by its sources
    intent_probability: float
    model_ok: bool  # the model answered in the requested shape, without hitting its token limit
    # How surely the passages answer the question (the composition's evidence); None when the answer
    # comes from the customer's own records, which answer it exactly.
    evidence: float | None = None


def confidence(signals: Signals, threshold: float = 0.55) -> float:
    """How sure the copilot is of its reply: the support it has (retrieval, grounding, intent, the model
    in shape), capped by how surely the passages answer the question, which sits exactly at `threshold`
    (the confidence threshold) when the evidence is at `ANSWER_EVIDENCE`."""
    support = (
        0.3 * signals.relevance
        + 0.5 * signals.grounded
        + 0.1 * signals.intent_probability
        + 0.1 * (1.0 if signals.model_ok else 0.0)
    )
    if signals.evidence is not None:
        support = min(support, threshold + 1.5 * (signals.evidence - ANSWER_EVIDENCE))
    return round(min(1.0, max(0.0, support)), 3)


def relevance_from_cosine(cosine: float) -> float:
    """MiniLM cosine of a question and its answering passage sits around 0.5-0.8; unrelated text below 0.2."""
    return min(1.0, max(0.0, (cosine - 0.2) / 0.5))


def asks_for_person(intent: str, message: str) -> bool:
    """A hand-over is what the customer asked for only when the message names a person to talk to (the
    intent model alone also hears it in "sorry, I want to ask about ...")."""
    return intent == "human_handoff" and bool(_ASKS_FOR_PERSON.search(message))


def amounts(text: str) -> list[Decimal]:
    found = []
    for match in _AMOUNT.finditer(text):
        raw = (match.group(1) or match.group(2)).replace(",", "")
        try:
            found.append(Decimal(raw))
        except InvalidOperation:
            continue
    return found


def standing_reasons(
    settings: CopilotSettings, *, intent: str, message: str, orders: list[dict[str, Any]]
) -> list[str]:
    """What sends a message to a person whatever the reply says: a person asked for, a sensitive intent,
    a refund over the limit. Known before any answer is written, so none is written for nothing."""
    reasons = []
    if asks_for_person(intent, message):
        reasons.append("human_requested")
    if intent in settings.sensitive_intents:
        reasons.append(f"sensitive_intent:{intent}")
    if intent == "returns_refunds":
        mentioned = amounts(message)
        ordered = [Decimal(o["total"]) for o in orders if o.get("order_id", "") in message]
        if any(amount > settings.refund_limit for amount in [*mentioned, *ordered]):
            reasons.append("refund_over_limit")
    return reasons


def escalation_reasons(
    settings: CopilotSettings,
    *,
    intent: str,
    message: str,
    orders: list[dict[str, Any]],
    score: float,
    model_failed: bool,
    ungrounded: bool,
) -> list[str]:
    reasons = standing_reasons(settings, intent=intent, message=message, orders=orders)
    if model_failed:
        reasons.append("model_failure")
    if ungrounded:
        reasons.append("ungrounded")
    if score < settings.confidence_threshold and not reasons:
        reasons.append("low_confidence")
    return reasons
