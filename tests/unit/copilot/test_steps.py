"""The copilot's steps one by one: grounding, policy, memory, tools, webhooks."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from keel.config import CopilotSettings
from keel.copilot.grounding import GroundingChecker, sentences
from keel.copilot.memory import rewrite_query
from keel.copilot.policy import ANSWER_EVIDENCE, Signals, amounts, confidence, escalation_reasons
from keel.copilot.tools.base import Tool, ToolBox
from keel.errors import InvalidRequestError, RateLimitError, UpstreamError
from keel.review.webhooks import WebhookSender, sign
from tests.unit.gateway.doubles import FixedEmbedder

WARRANTY = ("w", "Every e-bike has a 5-year warranty on the frame. Wear parts such as tyres are not covered.")
CHARGING = ("c", "A full charge takes about 4.5 hours with the standard charger.")


def check(reply: str) -> list[bool]:
    # Orthogonal vectors for every text: only the lexical test can support a sentence here.
    embedder = FixedEmbedder()
    embedder.embed = lambda texts: __import__("numpy").eye(len(texts), 3 * len(texts), dtype="float32")  # type: ignore[method-assign]
    verdict = GroundingChecker(embedder).check(reply, [WARRANTY, CHARGING])
    return [s.supported for s in verdict.sentences]


def test_supported_sentences_pass_and_inventions_fail() -> None:
    assert check("The frame has a 5-year warranty. A full charge takes about 4.5 hours.") == [True, True]
    assert check("We offer free pizza on Fridays.") == [False]


def test_wrong_numbers_fail_even_with_matching_words() -> None:
    assert check("The frame has a 10-year warranty.") == [False]
    assert check("A full charge takes about 2 hours with the standard charger.") == [False]


def test_flipped_polarity_fails() -> None:
    assert check("The frame is not covered by the warranty.") == [False]
    assert check("Tyres are not covered.") == [True]


def test_sentences_without_content_state_nothing() -> None:
    assert check("][") == []
    assert sentences("One. Two? Three!") == ["One.", "Two?", "Three!"]


def test_confidence_is_bounded_and_monotonic() -> None:
    low = confidence(Signals(relevance=0.1, grounded=0.0, intent_probability=0.2, model_ok=False))
    high = confidence(Signals(relevance=0.9, grounded=1.0, intent_probability=0.9, model_ok=True))
    assert 0 <= low < high <= 1


def test_confidence_is_capped_by_how_surely_the_passages_answer() -> None:
    sure = Signals(relevance=0.9, grounded=1.0, intent_probability=0.9, model_ok=True)
    assert confidence(replace(sure, evidence=ANSWER_EVIDENCE)) == 0.55
    assert confidence(replace(sure, evidence=ANSWER_EVIDENCE - 0.01)) < 0.55
    assert confidence(replace(sure, evidence=0.9)) == confidence(sure)
    # The cap sits at the operator's threshold.
    assert confidence(replace(sure, evidence=ANSWER_EVIDENCE), threshold=0.7) == 0.7


def reasons(intent: str, message: str = "hello", score: float = 0.9, **extra: Any) -> list[str]:
    defaults: dict[str, Any] = {"orders": [], "model_failed": False, "ungrounded": False}
    return escalation_reasons(
        CopilotSettings(), intent=intent, message=message, score=score, **{**defaults, **extra}
    )


def test_escalation_reasons() -> None:
    assert reasons("shipping") == []
    assert reasons("shipping", score=0.2) == ["low_confidence"]
    assert reasons("human_handoff", "Can I talk to a person?") == ["human_requested"]
    # The intent alone, with no person asked for, is no hand-over.
    assert reasons("human_handoff", "Sorry, I want to ask about floods") == []
    assert reasons("legal") == ["sensitive_intent:legal"]
    assert reasons("returns_refunds", "refund me €900 please") == ["refund_over_limit"]
    assert reasons("returns_refunds", "refund me 120 EUR") == []
    big_order = [{"order_id": "LC-1", "total": "2899.00"}]
    assert reasons("returns_refunds", "refund order LC-1", orders=big_order) == ["refund_over_limit"]
    assert reasons("shipping", model_failed=True, ungrounded=True) == ["model_failure", "ungrounded"]
    assert amounts("between €1,200 and 30 euros") == [Decimal(1200), Decimal(30)]


def test_follow_ups_are_searched_with_the_earlier_question() -> None:
    history = [("user", "How long does delivery to Germany take?"), ("assistant", "3-5 working days.")]
    assert (
        rewrite_query("And to France?", history) == "How long does delivery to Germany take? And to France?"
    )
    standalone = "What warranty do you give on the motor of the cargo bike?"
    assert rewrite_query(standalone, history) == standalone
    assert rewrite_query("And to France?", []) == "And to France?"


class EchoArgs(BaseModel):
    text: str
    delay_s: float = 0.0


def echo(tenant: str, args: EchoArgs) -> str:
    time.sleep(args.delay_s)
    return f"{tenant}:{args.text}"


def test_tools_validate_time_out_and_are_rate_limited() -> None:
    box = ToolBox([Tool("echo", "Echoes.", EchoArgs, echo, timeout_s=0.2, calls_per_minute=3)])
    assert asyncio.run(box.call("acme", "echo", {"text": "hi"})).result == "acme:hi"
    assert box.schemas()[0]["parameters"]["required"] == ["text"]
    with pytest.raises(InvalidRequestError, match="Invalid arguments"):
        asyncio.run(box.call("acme", "echo", {"text": 5}))
    with pytest.raises(UpstreamError, match="did not answer"):
        asyncio.run(box.call("acme", "echo", {"text": "slow", "delay_s": 1.0}))
    asyncio.run(box.call("acme", "echo", {"text": "third call"}))
    with pytest.raises(RateLimitError):
        asyncio.run(box.call("acme", "echo", {"text": "fourth call"}))
    assert asyncio.run(box.call("globex", "echo", {"text": "other tenant"})).result == "globex:other tenant"
    with pytest.raises(InvalidRequestError, match="No tool"):
        asyncio.run(box.call("acme", "nope", {}))


def test_webhooks_are_signed_and_retried() -> None:
    received: list[httpx.Request] = []

    def upstream(request: httpx.Request) -> httpx.Response:
        received.append(request)
        return httpx.Response(503 if len(received) == 1 else 200)

    sender = WebhookSender("https://client.example/hooks", "s3cret", transport=httpx.MockTransport(upstream))
    assert asyncio.run(sender.send("support.reply.decided", {"reply_id": "rep_1"}))
    assert len(received) == 2
    last = received[-1]
    expected = sign("s3cret", last.headers["X-Keel-Timestamp"], last.content)
    assert last.headers["X-Keel-Signature"] == expected
    assert sign("other", last.headers["X-Keel-Timestamp"], last.content) != expected
    assert not asyncio.run(WebhookSender(None, None).send("x", {}))
