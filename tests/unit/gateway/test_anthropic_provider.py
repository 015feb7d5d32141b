"""The Anthropic provider against httpx.MockTransport: request shape, answers, streams, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from keel.gateway.protocol import ChatMessage, Usage
from keel.gateway.providers.anthropic import ANTHROPIC_VERSION, AnthropicProvider
from keel.gateway.providers.base import (
    ChatProvider,
    ContextWindowExceeded,
    Generation,
    GenerationRequest,
    ProviderError,
    ProviderTimeout,
    StreamEnd,
    StreamEvent,
    TextDelta,
)

Handler = Callable[[httpx.Request], httpx.Response]

REQUEST = GenerationRequest(
    messages=[
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="Hi"),
        ChatMessage(role="assistant", content="Hello."),
        ChatMessage(role="developer", content="Answer in French."),
        ChatMessage(role="user", content="How are you?"),
    ]
)


def provider(handler: Handler) -> AnthropicProvider:
    return AnthropicProvider(
        "https://anthropic.test",
        "claude-test",
        api_key="sk-ant-test",
        timeout_s=5.0,
        default_max_tokens=333,
        transport=httpx.MockTransport(handler),
    )


def complete(handler: Handler, request: GenerationRequest = REQUEST) -> Generation:
    return asyncio.run(provider(handler).complete(request))


def stream(handler: Handler, request: GenerationRequest = REQUEST) -> list[StreamEvent]:
    async def collect() -> list[StreamEvent]:
        return [event async for event in provider(handler).stream(request)]

    return asyncio.run(collect())


def failure(handler: Handler, streaming: bool) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        stream(handler) if streaming else complete(handler)
    return caught.value


def sent_body(request: GenerationRequest) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def handler(http_request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(http_request.content))
        return httpx.Response(200, json=message())

    complete(handler, request)
    return seen[0]


def message(text: str = "Bonjour !", stop: str = "end_turn", **usage: int) -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": text}],
        "stop_reason": stop,
        "usage": {"input_tokens": 20, "output_tokens": 4, **usage},
    }


def event(kind: str, **fields: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **fields})}\n\n".encode()


def text_delta(text: str) -> bytes:
    return event("content_block_delta", index=0, delta={"type": "text_delta", "text": text})


STARTED = event("message_start", message={"usage": {"input_tokens": 20, "output_tokens": 1}}) + event(
    "content_block_start", index=0, content_block={"type": "text", "text": ""}
)


def finished(stop: str = "end_turn", output_tokens: int = 2) -> bytes:
    return (
        event("content_block_stop", index=0)
        + event("message_delta", delta={"stop_reason": stop}, usage={"output_tokens": output_tokens})
        + event("message_stop")
    )


def answer(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, content=body, headers=headers)


def error(status: int, kind: str, text: str, headers: dict[str, str] | None = None) -> Handler:
    payload = {"type": "error", "error": {"type": kind, "message": text}}
    return answer(json.dumps(payload).encode(), status, headers)


def test_it_is_a_ready_chat_provider() -> None:
    chat: ChatProvider = provider(answer(b"{}"))
    assert chat.is_ready


def test_the_request_goes_to_messages_with_the_key_and_version() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=message())

    complete(handler)
    assert str(seen[0].url) == "https://anthropic.test/v1/messages"
    assert seen[0].headers["x-api-key"] == "sk-ant-test"
    assert seen[0].headers["anthropic-version"] == ANTHROPIC_VERSION == "2023-06-01"


def test_system_messages_are_lifted_and_max_tokens_defaults_from_the_constructor() -> None:
    assert sent_body(REQUEST) == {
        "model": "claude-test",
        "max_tokens": 333,
        "system": "Be brief.\n\nAnswer in French.",
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "How are you?"},
        ],
    }


def test_sampling_options_map_to_anthropics_names_and_ranges() -> None:
    request = GenerationRequest(
        messages=REQUEST.messages[1:2], max_tokens=50, temperature=1.5, top_p=0.9, stop=["END"], seed=3
    )
    body = sent_body(request)
    assert (body["max_tokens"], body["top_p"], body["stop_sequences"]) == (50, 0.9, ["END"])
    assert body["temperature"] == 1.0  # Anthropic's range ends at 1
    assert "seed" not in body and "system" not in body


def test_a_json_schema_becomes_a_system_instruction() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"]}
    body = sent_body(GenerationRequest(messages=REQUEST.messages, json_schema=schema))
    assert body["system"].startswith("Be brief.\n\nAnswer in French.\n\n")
    assert json.dumps(schema, indent=2) in body["system"]
    assert "response_format" not in body


def test_json_mode_asks_for_a_json_object() -> None:
    body = sent_body(GenerationRequest(messages=REQUEST.messages[1:2], json_mode=True))
    assert "JSON object" in body["system"]


def test_a_message_gives_text_stop_reason_and_usage_with_cached_prompt_tokens() -> None:
    payload = message("Bon", cache_read_input_tokens=100, cache_creation_input_tokens=5)
    payload["content"].append({"type": "text", "text": "jour"})
    generation = complete(answer(json.dumps(payload).encode()))
    assert generation == Generation("Bonjour", "stop", Usage.of(125, 4))


@pytest.mark.parametrize(
    ("stop", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
    ],
)
def test_stop_reasons_map_onto_keels(stop: str, finish: str) -> None:
    assert complete(answer(json.dumps(message(stop=stop)).encode())).finish_reason == finish


def test_a_stream_yields_text_deltas_then_one_end_with_usage() -> None:
    seen: list[dict[str, Any]] = []
    body = STARTED + event("ping") + text_delta("Bon") + text_delta("jour") + finished("max_tokens", 7)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    events = stream(handler)
    assert events == [TextDelta("Bon"), TextDelta("jour"), StreamEnd("length", Usage.of(20, 7))]
    assert seen[0]["stream"] is True


def test_a_stream_without_output_usage_counts_its_deltas() -> None:
    body = (
        STARTED
        + text_delta("a")
        + text_delta("b")
        + event("message_delta", delta={"stop_reason": "end_turn"})
    )
    assert stream(answer(body + event("message_stop")))[-1] == StreamEnd("stop", Usage.of(20, 2))


def test_a_stream_that_stops_before_it_finished_is_retryable() -> None:
    error_ = failure(answer(STARTED + text_delta("Bon")), streaming=True)
    assert error_.retryable and "before it finished" in error_.message


def test_an_overloaded_event_inside_the_stream_is_retryable() -> None:
    body = (
        STARTED
        + text_delta("Bon")
        + event("error", error={"type": "overloaded_error", "message": "Overloaded"})
    )
    caught = failure(answer(body), streaming=True)
    assert caught.retryable and "Overloaded" in caught.message


@pytest.mark.parametrize("streaming", [False, True])
def test_a_200_that_is_not_a_message_is_retryable(streaming: bool) -> None:
    body = b"data: not json\n\n" if streaming else b'{"content": "nope"}'
    assert failure(answer(body), streaming).retryable


def test_a_message_without_usage_is_retryable() -> None:
    payload = message()
    payload["usage"] = {}
    assert failure(answer(json.dumps(payload).encode()), streaming=False).retryable


@pytest.mark.parametrize("streaming", [False, True])
def test_connection_failures_are_retryable_and_timeouts_are_timeouts(streaming: bool) -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow")

    caught = failure(refused, streaming)
    assert caught.retryable and not isinstance(caught, ProviderTimeout)
    assert isinstance(failure(slow, streaming), ProviderTimeout)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    ("status", "kind"), [(529, "overloaded_error"), (500, "api_error"), (503, "api_error")]
)
def test_overloaded_and_server_errors_are_retryable(status: int, kind: str, streaming: bool) -> None:
    caught = failure(error(status, kind, "Overloaded"), streaming)
    assert (caught.retryable, caught.status) == (True, status)


@pytest.mark.parametrize("streaming", [False, True])
def test_429_is_retryable_after_retry_after_in_seconds_or_as_a_date(streaming: bool) -> None:
    caught = failure(error(429, "rate_limit_error", "Slow down", {"retry-after": "12"}), streaming)
    assert (caught.retryable, caught.status, caught.retry_after) == (True, 429, 12.0)
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    dated = failure(error(429, "rate_limit_error", "Slow down", {"retry-after": when}), streaming)
    assert dated.retry_after is not None and 55 <= dated.retry_after <= 60


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    "text",
    [
        "prompt is too long: 208310 tokens > 200000 maximum",
        "input length and `max_tokens` exceed context limit",
    ],
)
def test_a_prompt_too_long_is_context_window_exceeded(text: str, streaming: bool) -> None:
    assert isinstance(failure(error(400, "invalid_request_error", text), streaming), ContextWindowExceeded)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(("status", "kind"), [(400, "invalid_request_error"), (401, "authentication_error")])
def test_other_client_errors_are_final(status: int, kind: str, streaming: bool) -> None:
    caught = failure(error(status, kind, "messages: roles must alternate"), streaming)
    assert (caught.retryable, caught.status) == (False, status)
    assert not isinstance(caught, ContextWindowExceeded)
    assert "roles must alternate" in caught.message
