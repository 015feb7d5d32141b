"""Output policy: what a reply must not contain before it reaches a customer — blocked terms
(moderation), the system prompt, other people's contact data, and secrets."""

from __future__ import annotations

import re
from dataclasses import dataclass

from keel.guard.pii import PiiDetector

_SECRET = re.compile(
    r"\b(?:keel_[A-Za-z0-9_-]{20,}|sk-[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|ghp_[A-Za-z0-9]{30,})\b"
)
_WORD = re.compile(r"\w+")
# This many consecutive words of the system prompt in a reply is a leak, not a coincidence.
_LEAK_WORDS = 8


@dataclass(frozen=True)
class OutputVerdict:
    allowed: bool
    reasons: list[str]


def _shingles(text: str, size: int) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


class OutputPolicy:
    def __init__(self, blocked_terms: list[str], pii: PiiDetector) -> None:
        self._blocked = (
            re.compile(r"\b(?:" + "|".join(re.escape(t) for t in blocked_terms) + r")\b", re.I)
            if blocked_terms
            else None
        )
        self._pii = pii

    def check(
        self, reply: str, *, system_prompt: str = "", allowed_emails: frozenset[str] = frozenset()
    ) -> OutputVerdict:
        reasons = []
        if self._blocked is not None and self._blocked.search(reply):
            reasons.append("moderation")
        if system_prompt and _shingles(reply, _LEAK_WORDS) & _shingles(system_prompt, _LEAK_WORDS):
            reasons.append("system_prompt_leak")
        if _SECRET.search(reply):
            reasons.append("secret")
        # Contact data of anyone but the customer being answered: another customer's, or invented.
        foreign = [
            span
            for span in self._pii.detect(reply, types=("EMAIL", "PHONE", "CARD", "IBAN", "SSN"))
            if not (span.type == "EMAIL" and span.text.lower() in allowed_emails)
        ]
        if foreign:
            reasons.append("personal_data")
        return OutputVerdict(not reasons, reasons)
