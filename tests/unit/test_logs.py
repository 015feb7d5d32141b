"""Logs hold no raw personal data: every value of every event, stdlib records and exception messages
included, is redacted before it is rendered."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from keel.cli_common import command_settings
from keel.guard.log_redaction import PersonalDataRedactor
from keel.logs import get_logger

EMAIL, PHONE, CARD = "anna.berg@example.com", "+44 20 7946 0958", "4111 1111 1111 1111"


def test_log_output_holds_no_raw_personal_data(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    # As every command (`keel serve` included) configures logging.
    command_settings(quiet=False, log_level="info", log_json=True)
    try:
        log = get_logger("keel.test")
        log.info(f"reply sent to {EMAIL}", phone=PHONE, payment={"card": CARD}, tags=[EMAIL], attempts=2)
        log.info("ticket_opened", request_id="22b8eb9e2a93458f99d1f99452aab924", duration_ms=12.5)
        # A library's stdlib logger, with %-style arguments.
        logging.getLogger("uvicorn.error").warning("client %s paid with %s", EMAIL, CARD)
        try:
            raise ValueError(f"no account for {EMAIL}, call {PHONE}")
        except ValueError:
            log.exception("lookup_failed")
            logging.getLogger("somelib").exception("somelib failed")
    finally:
        written = capsys.readouterr().err
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()
    lines = [json.loads(line) for line in written.splitlines()]
    assert len(lines) == 5
    squeezed = written.replace(" ", "")
    for raw in (EMAIL, PHONE.replace(" ", ""), CARD.replace(" ", "")):
        assert raw not in squeezed
    first, ticket, stdlib, keel_error, lib_error = lines
    assert first["event"] == "reply sent to <EMAIL>" and first["phone"] == "<PHONE>"
    assert first["payment"] == {"card": "<CARD>"} and first["tags"] == ["<EMAIL>"] and first["attempts"] == 2
    # What holds no personal data is written as it was.
    assert ticket["request_id"] == "22b8eb9e2a93458f99d1f99452aab924" and ticket["duration_ms"] == 12.5
    assert stdlib["event"] == "client <EMAIL> paid with <CARD>" and stdlib["logger"] == "uvicorn.error"
    for error in (keel_error, lib_error):
        assert "ValueError: no account for <EMAIL>, call <PHONE>" in str(error["exception"])


def test_the_redactor_leaves_events_without_personal_data_alone() -> None:
    redactor = PersonalDataRedactor()
    event = {"event": "model_loaded", "model": "SmolLM2", "n_ctx": 4096, "ok": True, "none": None, "e": ""}
    assert redactor(None, "info", dict(event)) == event
    assert redactor(None, "info", {"path": _Path(f"/exports/{EMAIL}/a")}) == {"path": "/exports/<EMAIL>/a"}


class _Path:
    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text
