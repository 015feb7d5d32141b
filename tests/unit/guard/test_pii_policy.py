"""The personal-data policy's mechanisms: payment data masked on every write, captured content redacted
by the guard's detector or dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.guard.pii import PiiDetector
from keel.guard.pii_policy import (
    DROPPED,
    ContentRedactor,
    install_payment_masking,
    mask_payment_data,
    mask_payment_values,
)
from keel.store.engine import Database
from keel.store.models import Base, SupportReply


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Card 4111 1111 1111 1111 please", "Card ****1111 please"),
        ("card 5555555555554444.", "card ****4444."),
        ("IBAN DE89 3704 0044 0532 0130 00 ok", "IBAN ****3000 ok"),
        ("to GB82WEST12345698765432", "to ****5432"),
        ("two: 4111111111111111 and DE89370400440532013000", "two: ****1111 and ****3000"),
    ],
)
def test_cards_and_ibans_keep_their_last_four(text: str, masked: str) -> None:
    assert mask_payment_data(text) == masked


@pytest.mark.parametrize(
    "text",
    ["Order 1234 5678 9012 3456 shipped", "Call +44 20 7946 0958", "invoice 2024-0001-77", "no digits"],
)
def test_look_alikes_stay(text: str) -> None:
    assert mask_payment_data(text) == text


def test_values_are_masked_through_json_and_utf8_bytes() -> None:
    value = {"a": ["card 4111 1111 1111 1111"], "b": 3, "c": b"iban DE89370400440532013000"}
    assert mask_payment_values(value) == {"a": ["card ****1111"], "b": 3, "c": b"iban ****3000"}
    pdf = b"%PDF\xff\xfe 4111111111111111"
    assert mask_payment_values(pdf) == pdf  # not text: left as it is


def test_every_orm_write_is_masked(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'keel.db'}")
    Base.metadata.create_all(database.engine)
    install_payment_masking(database)
    with database.session() as session:
        reply = SupportReply(
            tenant="t",
            conversation_id="c",
            question="My card 4111 1111 1111 1111 was charged twice",
            status="answered",
            reply="Refunded to DE89 3704 0044 0532 0130 00.",
            citations=[{"quote": "card 5555555555554444"}],
            confidence=0.5,
            trace_id="x",
        )
        session.add(reply)
    with database.session() as session:
        stored = session.get_one(SupportReply, reply.id)
        assert stored.question == "My card ****1111 was charged twice"
        assert stored.reply == "Refunded to ****3000."
        assert stored.citations == [{"quote": "card ****4444"}]
        stored.reply = "Card 4111111111111111 noted"
    with database.reading() as session:
        assert session.get_one(SupportReply, reply.id).reply == "Card ****1111 noted"
    raw = (tmp_path / "keel.db").read_bytes() + (tmp_path / "keel.db-wal").read_bytes()
    assert b"4111" * 4 not in raw and b"4111 1111" not in raw


def test_content_without_the_ner_model_is_dropped_and_tokens_are_pattern_redacted() -> None:
    redactor = ContentRedactor(PiiDetector(ner=False))
    assert redactor.text("Tell Marisol Quintero that it arrived") == DROPPED
    assert redactor.text("jane@example.org") == "<EMAIL>"
    assert redactor.text("keel-local") == "keel-local"
    assert redactor.attributes({"n": 3, "ids": ["a1", "b2"]}) == {"n": 3, "ids": ["a1", "b2"]}


def test_content_past_the_budget_or_too_long_is_dropped() -> None:
    redactor = ContentRedactor(PiiDetector(ner=False), budget_s=-1)
    assert redactor.attributes({"prompt": "two words", "model": "keel-local"}) == {
        "prompt": DROPPED,
        "model": "keel-local",
    }
    assert ContentRedactor(PiiDetector(ner=False), max_chars=5).text("a b c d e f") == DROPPED


def test_a_batch_of_spans_is_redacted_as_each_span_alone() -> None:
    spans = [
        {"prompt": "user: My name is Quintero", "completion": "Hello Quintero!"},
        {"prompt": ["Tell Marisol Quintero that it arrived", "mail jane@example.org"], "model": "keel-local"},
        {"completion": "Hello Quintero!", "n": 3},  # no name found in this span: the echo is per span
    ]
    redactor = ContentRedactor(PiiDetector())
    assert redactor.attributes_many(spans) == [redactor.attributes(values) for values in spans]
    assert ContentRedactor(PiiDetector(), budget_s=-1).attributes_many(spans)[1]["prompt"] == [
        DROPPED,
        DROPPED,
    ]


def test_a_name_found_once_is_redacted_wherever_the_span_repeats_it() -> None:
    redactor = ContentRedactor(PiiDetector())
    redacted = redactor.attributes(
        {
            "prompt": "user: My name is Quintero, card 4111 1111 1111 1111",
            "completion": "Sure thing, quintero! Quintero's card is safe.",
        }
    )
    assert "quintero" not in str(redacted).lower() and "4111" not in str(redacted)
    assert redacted["prompt"] == "user: My name is <PERSON>, card <CARD>"


def test_spans_handed_to_another_exporter_are_redacted() -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from keel.observe.exporter import RedactingExporter

    collected = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(
        SimpleSpanProcessor(
            RedactingExporter(collected, ContentRedactor(PiiDetector(ner=False)).attributes_many)
        )
    )
    with provider.get_tracer("t").start_as_current_span("chat") as span:
        span.set_attribute("gen_ai.prompt", "Tell Obinna Eze to pay")
        span.set_attribute("keel.user", "jane@example.org")
        span.set_attribute("gen_ai.usage.input_tokens", 12)
    (stored,) = collected.get_finished_spans()
    assert dict(stored.attributes or {}) == {
        "gen_ai.prompt": DROPPED,
        "keel.user": "<EMAIL>",
        "gen_ai.usage.input_tokens": 12,
    }


def test_a_token_without_digit_at_or_colon_is_left_as_it_is_and_that_loses_nothing() -> None:
    redactor = ContentRedactor(PiiDetector(ner=False))
    plain = ["POST", "stop", "keel-embed", "/v1/chat/completions", "miss", "deadbeef", "Obinna", "ab.cd_ef"]
    assert [redactor.text(token) for token in plain] == plain
    assert all(PiiDetector(ner=False).redact(token) == token for token in plain)  # what the scan gives
    assert redactor.text("fe80::abcd") == "<IP>" and redactor.text("x@y.io") == "<EMAIL>"
    assert redactor.text("+442079460958") == "<PHONE>"
