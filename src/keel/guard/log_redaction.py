"""Personal data out of log lines: a structlog processor that runs the guard's pattern redactor over
every value of an event before it is rendered (`keel.logs.configure_logging(redactor=...)`)."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

from keel.guard.pii import PiiDetector

# Keys structlog itself fills with values that hold no personal data.
_OWN_KEYS = frozenset({"timestamp", "level", "logger"})
# Every kind the redactor finds holds a digit, an "@", a ":" (IPv6) or a space (addresses, cued names):
# a value with none of them (a name, a status, most paths) is not scanned.
_MAY_HOLD_PERSONAL_DATA = re.compile(r"[\d@:\s]")


class PersonalDataRedactor:
    """A structlog processor: each string in an event (its message, its values, lists and mappings of
    them, a formatted exception) passed through the guard's pattern redactor, so e-mails, phone numbers,
    card numbers, IBANs, SSNs, IP and street addresses and cue-marked names become ``<EMAIL>``... Other
    objects are redacted in the text they would be rendered as. Patterns only: cheap enough for every
    log call (the named-entity tier is for traces, `guard/pii_policy.py`)."""

    def __init__(self, detector: PiiDetector | None = None) -> None:
        self._detector = detector or PiiDetector(ner=False)

    def __call__(self, _: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if key not in _OWN_KEYS:
                event[key] = self._redacted(value)
        return event

    def _redacted(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self._detector.redact(value) if _MAY_HOLD_PERSONAL_DATA.search(value) else value
        if isinstance(value, list | tuple):
            return [self._redacted(item) for item in value]
        if isinstance(value, dict):
            return {key: self._redacted(item) for key, item in value.items()}
        return self._detector.redact(str(value))
