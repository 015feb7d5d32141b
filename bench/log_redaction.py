"""The log redactor's cost: one log call rendered to JSON, with and without `PersonalDataRedactor`, for
a request-log event, an event carrying personal data, and an error with a traceback.

    .venv/bin/python -m bench.log_redaction [--calls 2000]

Each figure is the median and p95 of per-call times, with the 1-minute load average it was measured at.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import time
from typing import Any

import structlog

from bench.harness import summary, write_results
from keel.guard.log_redaction import PersonalDataRedactor


def _traceback() -> Any:
    try:
        raise ValueError("no account for anna.berg@example.com")
    except ValueError:
        import sys

        return sys.exc_info()


EVENTS: dict[str, dict[str, Any]] = {
    "request log (no personal data)": {
        "event": "request",
        "method": "POST",
        "path": "/v1/chat/completions",
        "status": 200,
        "duration_ms": 412.7,
        "request_id": "22b8eb9e2a93458f99d1f99452aab924",
    },
    "event with an e-mail, a phone and a card": {
        "event": "reply sent to anna.berg@example.com",
        "phone": "+44 20 7946 0958",
        "card": "4111 1111 1111 1111",
        "ticket": "T-4411",
    },
    "error with a traceback": {"event": "lookup_failed", "exc_info": _traceback()},
}


def per_call_us(event: dict[str, Any], redact: bool, calls: int) -> dict[str, float]:
    processors: list[Any] = [structlog.processors.format_exc_info]
    if redact:
        processors.append(PersonalDataRedactor())
    formatter = structlog.stdlib.ProcessorFormatter(
        processors=[*processors, structlog.processors.JSONRenderer()]
    )
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(formatter)
    record = logging.LogRecord("keel.bench", logging.INFO, __file__, 1, "", None, None)
    times = []
    for _ in range(calls):
        record.msg = dict(event)  # wrap_for_formatter hands the event over as the record's message
        started = time.perf_counter()
        handler.handle(record)
        times.append((time.perf_counter() - started) * 1e6)
    return {key: round(value, 1) for key, value in summary(times).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    data: dict[str, Any] = {"calls": args.calls, "cases": {}}
    lines = [
        "| log call | plain µs p50 | p95 | redacted µs p50 | p95 | added µs (p50) | load average |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, event in EVENTS.items():
        load = round(os.getloadavg()[0], 2)
        plain, redacted = per_call_us(event, False, args.calls), per_call_us(event, True, args.calls)
        data["cases"][name] = {"plain_us": plain, "redacted_us": redacted, "load_average_1m": load}
        lines.append(
            f"| {name} | {plain['median']} | {plain['p95']} | {redacted['median']} | {redacted['p95']} | "
            f"{redacted['median'] - plain['median']:.1f} | {load} |"
        )
    write_results("log_redaction", data, "\n".join(lines))


if __name__ == "__main__":
    main()
