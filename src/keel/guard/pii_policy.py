"""Where personal data may be kept (docs/guardrails.md, "Personal data policy"), enforced in two places:

- Payment card numbers and IBANs are masked to their last four characters before anything is written
  to the database, business records included: `install_payment_masking` hooks every flush of a
  `Database`'s sessions and masks every string, bytes and JSON value of the rows being written.
- Traces (and anything else that keeps captured content) hold no personal data at all: a
  `ContentRedactor` runs the guard's own detector, named-entity tier included, on every captured string;
  what it cannot scan within its time budget, or at all (no NER model), is dropped, never kept raw.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import inspect
from sqlalchemy.orm import Session

from keel.guard.pii import PiiDetector
from keel.guard.pii_patterns import PiiSpan, PiiType, find_cards, find_ibans
from keel.store.engine import Database

DROPPED = "[dropped: not scanned for personal data]"
_STRUCTURED: tuple[PiiType, ...] = ("EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP")
_ALNUM = re.compile(r"[A-Za-z0-9]")
# Text that holds a space and a capital letter may hold a name: only such text needs the NER tier.
_MAY_NAME = re.compile(r"\s")
# Every structured type holds a digit, an "@" (e-mail) or a ":" (an IPv6 address may be all hex letters):
# a single token with none of them (a method, a route name, a finish reason) cannot hold one.
_MAY_BE_STRUCTURED = re.compile(r"[\d@:]")
# Strings scanned for names in one pass of the model, and between two looks at the time budget. The model
# is the guard's: a request's message waits behind at most one such batch. Measured with the gateway
# bench: batches of 8 took the default config's p95 from 32 to 52 ms; a model of the exporter's own
# kept it at 35 ms but cost throughput (43 requests/s against 55) as the two models fought for 2 cores.
_SCAN_BATCH = 2


def _payment_spans(text: str) -> Iterator[PiiSpan]:
    last_end = -1
    for found in sorted([*find_cards(text), *find_ibans(text)], key=lambda s: (s.start, -s.end)):
        if found.start >= last_end:
            last_end = found.end
            yield found


def mask_payment_data(text: str) -> str:
    """Card numbers and IBANs replaced by ``****`` and their last four characters (``****4242``)."""
    if not any(ch.isdigit() for ch in text):
        return text
    parts: list[str] = []
    last = 0
    for found in _payment_spans(text):
        tail = "".join(_ALNUM.findall(found.text))[-4:]
        parts += [text[last : found.start], f"****{tail}"]
        last = found.end
    return "".join([*parts, text[last:]]) if parts else text


def mask_payment_values(value: Any) -> Any:
    """`mask_payment_data` through strings, UTF-8 bytes and JSON-like lists and dicts; other bytes
    (a PDF's) are left as they are."""
    if isinstance(value, str):
        return mask_payment_data(value)
    if isinstance(value, bytes):
        try:
            decoded = value.decode("utf-8")
        except UnicodeDecodeError:
            return value
        masked = mask_payment_data(decoded)
        return value if masked == decoded else masked.encode("utf-8")
    if isinstance(value, list):
        return [mask_payment_values(item) for item in value]
    if isinstance(value, dict):
        return {key: mask_payment_values(item) for key, item in value.items()}
    return value


def _mask_rows(session: Session, _context: Any, _instances: Any) -> None:
    for row in [*session.new, *session.dirty]:
        state = inspect(row)
        loaded = state.dict  # deferred columns that were never loaded are not read (nor written)
        for attribute in state.mapper.column_attrs:
            key = attribute.key
            if key in loaded and isinstance(loaded[key], str | bytes | list | dict):
                masked = mask_payment_values(loaded[key])
                if masked != loaded[key]:
                    setattr(row, key, masked)


def install_payment_masking(database: Database) -> None:
    """Masks card numbers and IBANs in every row any session of `database` writes through the ORM."""
    database.listen_before_flush(_mask_rows)


class ContentRedactor:
    """Captured content as traces may keep it: every personal-data finding of the guard's detector
    replaced by its type (``<PERSON>``, ``<CARD>``). A name found anywhere in one span's attributes is
    also replaced wherever else it appears in them (a model's answer repeats the prompt's names in
    shapes of its own). Each call has `budget_s` seconds; strings still unscanned when it runs out,
    longer than `max_chars`, or needing names when the detector has no NER model, become DROPPED."""

    def __init__(self, pii: PiiDetector, *, budget_s: float = 2.0, max_chars: int = 20_000) -> None:
        self._pii = pii
        self._budget_s = budget_s
        self._max_chars = max_chars

    def attributes(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return self.attributes_many([values])[0]

    def attributes_many(self, spans: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """`attributes` of each span (an exporter's batch): the strings that need the name model are
        scanned together, in batches of `_SCAN_BATCH`, within `budget_s` a span."""
        deadline = time.monotonic() + self._budget_s * max(1, len(spans))
        wanted = list(
            dict.fromkeys(t for values in spans for t in _strings(values.values()) if self._needs_ner(t))
        )
        found: dict[str, list[PiiSpan]] = {}
        if self._pii.has_ner:
            for start in range(0, len(wanted), _SCAN_BATCH):
                if time.monotonic() > deadline:
                    break  # the rest stays unscanned: dropped below
                batch = wanted[start : start + _SCAN_BATCH]
                found.update(zip(batch, self._pii.detect_many(batch), strict=True))
        return [self._redacted(values, found) for values in spans]

    def text(self, text: str) -> str:
        return self.attributes({"text": text})["text"]  # type: ignore[no-any-return]

    def _needs_ner(self, text: str) -> bool:
        return bool(_MAY_NAME.search(text)) and len(text) <= self._max_chars

    def _redacted(self, values: Mapping[str, Any], found: Mapping[str, list[PiiSpan]]) -> dict[str, Any]:
        names: set[str] = set()
        redacted = {
            key: _map_strings(value, lambda text: self._text(text, found, names))
            for key, value in values.items()
        }
        words = {word for name in names for word in [name, *name.split()] if len(word) >= 3}
        if not words:
            return redacted
        echo = re.compile(
            r"(?<!\w)(?:" + "|".join(map(re.escape, sorted(words, key=len, reverse=True))) + r")(?!\w)",
            re.IGNORECASE,  # the model may write the name in lower case
        )
        return {
            key: _map_strings(value, lambda text: echo.sub("<PERSON>", text))
            for key, value in redacted.items()
        }

    def _text(self, text: str, found: Mapping[str, list[PiiSpan]], names: set[str]) -> str:
        if not _MAY_NAME.search(text):  # one token: an id, a model name, a number; patterns suffice
            return self._pii.redact(text, types=_STRUCTURED) if _MAY_BE_STRUCTURED.search(text) else text
        spans = found.get(text)
        if spans is None:  # too long, out of time, or no NER model: never kept unscanned
            return DROPPED
        names.update(span.text for span in spans if span.type == "PERSON")
        parts: list[str] = []
        last = 0
        for span in spans:
            parts += [text[last : span.start], f"<{span.type}>"]
            last = span.end
        return "".join([*parts, text[last:]])


def _strings(values: Iterable[Any]) -> Iterator[str]:
    for value in values:
        if isinstance(value, str):
            yield value
        elif isinstance(value, list | tuple):
            yield from _strings(value)


def _map_strings(value: Any, change: Callable[[str], str]) -> Any:
    """`value` with every string in it changed, nested lists and tuples walked (as `_strings` walks
    them; a tuple comes back as a list, as span attributes store sequences)."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list | tuple):
        return [_map_strings(item, change) for item in value]
    return value
