"""Confidence and escalation: how sure the copilot is, and when a person must look first."""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from keel.config import CopilotSettings

_AMOUNT = re.compile(r"(?:€|eur|euros?|\$|usd)\s*(\d[\d.,]*)|(\d[\d.,]*)\s*(?:€|eur|euros?|\$|usd)", re.I)


@dataclass(frozen=True)
class Signals:
    """What the pipeline learned, each in [0, 1]."""

    relevance: float  # how close the best source is to the question
    grounded: float  # share of the reply's sentences supported by its sources
    intent_probability: float
    model_ok: bool  # the model answered in the requested shape, without hitting its token limit


def confidence(signals: Signals) -> float:
    value = (
        0.35 * signals.relevance
        + 0.35 * signals.grounded
        + 0.2 * signals.intent_probability
        + 0.1 * (1.0 if signals.model_ok else 0.0)
    )
    return round(min(1.0, max(0.0, value)), 3)


def relevance_from_cosine(cosine: float) -> float:
    """MiniLM cosine of a question and its answering passage sits around 0.5-0.8; unrelated text below 0.2."""
    return min(1.0, max(0.0, (cosine - 0.2) / 0.5))


def amounts(text: str) -> list[Decimal]:
    found = []
    for match in _AMOUNT.finditer(text):
        raw = (match.group(1) or match.group(2)).replace(",", "")
        try:
            found.append(Decimal(raw))
        except InvalidOperation:
            continue
    return found


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
    reasons = []
    if intent == "human_handoff":
        reasons.append("human_requested")
    if intent in settings.sensitive_intents:
        reasons.append(f"sensitive_intent:{intent}")
    if intent == "returns_refunds":
        mentioned = amounts(message)
        ordered = [Decimal(o["total"]) for o in orders if o.get("order_id", "") in message]
        if any(amount > settings.refund_limit for amount in [*mentioned, *ordered]):
            reasons.append("refund_over_limit")
    if model_failed:
        reasons.append("model_failure")
    if ungrounded:
        reasons.append("ungrounded")
    if score < settings.confidence_threshold and not reasons:
        reasons.append("low_confidence")
    return reasons
