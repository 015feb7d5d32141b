"""Structured logs: JSON lines on stderr through structlog, for Keel's own loggers and the stdlib ones,
with personal data redacted from every value before it is written (docs/guardrails.md)."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from keel.guard.pii import PiiDetector

_SHARED_PROCESSORS: list[structlog.types.Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_logger_name,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


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


def configure_logging(level: str = "info", *, json: bool = True) -> None:
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    numeric_level = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[*_SHARED_PROCESSORS, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    # uvicorn's and the libraries' stdlib records go through the same redactor and renderer, their
    # exceptions formatted first so that the redactor sees the messages.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                PersonalDataRedactor(),
                renderer,
            ],
            foreign_pre_chain=_SHARED_PROCESSORS,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric_level)
    # Keel's request log already says what uvicorn's access log would, with the request id.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]
