"""The OpenAI-compatible provider against httpx.MockTransport: request shape, answers, streams, errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from keel.gateway.protocol import ChatMessage, Usage
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
from keel.gateway.providers.openai_compat import OpenAICompatibleProvider, parse_retry_after

Handler = Callable[[httpx.Request], httpx.Response]

REQUEST = GenerationRequest(
    messages=[
        ChatMessage(role="developer", content="Be brief."),
        ChatMessage(role="user", content="Hi there"),
    ]
)


def provider(handler: Handler) -> OpenAICompatibleProvider:
    transport = httpx.MockTransport(handler)
    return OpenAICompatibleProvider(
        "http://upstream.test/v1", "qwen2.5", api_key="sk-test", timeout_s=5.0, transport=transport
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


def completion(text: str = "Hello!", finish: str | None = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    }


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


def sse(*events: dict[str, Any] | str) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


def answer(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, content=body, headers=headers)


def error(status: int, payload: Any, headers: dict[str, str] | None = None) -> Handler:
    return answer(json.dumps(payload).encode(), status, headers)


class CutStream(httpx.AsyncByteStream):
    """A body that sends some bytes, then fails as a reset connection does."""

    def __init__(self, sent: bytes) -> None:
        self.sent = sent

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.sent
        raise httpx.ReadError("Connection reset by peer")


def test_it_is_a_ready_chat_provider() -> None:
    chat: ChatProvider = provider(answer(b"{}"))
    assert chat.is_ready


def test_the_request_carries_every_sampling_option_and_the_key() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion())

    request = GenerationRequest(
        messages=REQUEST.messages,
        max_tokens=64,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\n"],
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
    )
    complete(handler, request)
    assert str(seen[0].url) == "http://upstream.test/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    assert json.loads(seen[0].content) == {
        "model": "qwen2.5",
        # "developer" goes out as "system", which every OpenAI-compatible server knows.
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}],
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
    }


def test_unset_options_are_left_out_and_no_key_sends_no_authorization() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=completion())

    transport = httpx.MockTransport(handler)
    keyless = OpenAICompatibleProvider("http://ollama.test/v1/", "llama3", timeout_s=5.0, transport=transport)
    asyncio.run(keyless.complete(REQUEST))
    assert str(seen[0].url) == "http://ollama.test/v1/chat/completions"
    assert "authorization" not in seen[0].headers
    assert set(json.loads(seen[0].content)) == {"model", "messages"}


@pytest.mark.parametrize(
    ("options", "response_format"),
    [
        (
            {"json_schema": {"type": "object", "required": ["answer"]}},
            {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": {"type": "object", "required": ["answer"]}},
            },
        ),
        ({"json_mode": True}, {"type": "json_object"}),
    ],
)
def test_structured_output_asks_for_a_response_format(
    options: dict[str, Any], response_format: dict[str, Any]
) -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=completion('{"answer": 42}'))

    complete(handler, GenerationRequest(messages=REQUEST.messages, **options))
    assert seen[0]["response_format"] == response_format


def test_a_completion_gives_text_finish_reason_and_usage() -> None:
    generation = complete(error(200, completion("Hello!", "stop")))
    assert generation == Generation("Hello!", "stop", Usage.of(12, 3))


@pytest.mark.parametrize(
    ("upstream", "ours"), [("length", "length"), ("content_filter", "content_filter"), ("tool_calls", "stop")]
)
def test_finish_reasons_map_onto_keels(upstream: str, ours: str) -> None:
    assert complete(error(200, completion(finish=upstream))).finish_reason == ours


def test_a_stream_yields_deltas_then_one_end_with_the_upstreams_usage() -> None:
    seen: list[dict[str, Any]] = []
    body = sse(chunk("Hel"), chunk("lo"), chunk(finish="stop"), usage_chunk(9, 2), "[DONE]")

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    events = stream(handler)
    assert events == [TextDelta("Hel"), TextDelta("lo"), StreamEnd("stop", Usage.of(9, 2))]
    assert seen[0]["stream"] is True
    assert seen[0]["stream_options"] == {"include_usage": True}


def test_sse_comments_event_lines_and_multi_line_data_are_handled() -> None:
    body = (
        b": keep-alive\n\nevent: chunk\nid: 1\ndata: "
        + json.dumps(chunk("Hi")).encode()
        + b'\n\ndata: {"choices": [{"index": 0,\ndata: "delta": {}, "finish_reason": "length"}]}\n\n'
        + b"data: [DONE]\n\n"
    )
    assert stream(answer(body)) == [TextDelta("Hi"), StreamEnd("length", Usage.of(0, 1))]


def test_without_a_usage_chunk_deltas_count_the_completion_and_the_prompt_stays_zero() -> None:
    body = sse(chunk("One"), chunk(" two"), chunk(" three", "stop"), "[DONE]")
    assert stream(answer(body))[-1] == StreamEnd("stop", Usage.of(0, 3))


def test_done_without_a_finish_reason_ends_the_stream_as_stop() -> None:
    assert stream(answer(sse(chunk("Hi"), "[DONE]")))[-1] == StreamEnd("stop", Usage.of(0, 1))


def test_a_finish_reason_without_done_is_a_complete_stream() -> None:
    body = sse(chunk("Hi"), chunk(finish="stop"), usage_chunk(4, 1))
    assert stream(answer(body))[-1] == StreamEnd("stop", Usage.of(4, 1))


def test_a_stream_that_stops_before_it_finished_is_retryable() -> None:
    error = failure(answer(sse(chunk("Hel"), chunk("lo"))), streaming=True)
    assert error.retryable
    assert "before it finished" in error.message


def test_a_stream_cut_by_a_read_error_is_retryable_after_its_deltas() -> None:
    cut = CutStream(sse(chunk("Hel")))
    received: list[StreamEvent] = []

    async def consume() -> None:
        chat = provider(lambda request: httpx.Response(200, stream=cut))
        async for event in chat.stream(REQUEST):
            received.append(event)

    with pytest.raises(ProviderError) as caught:
        asyncio.run(consume())
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, httpx.ReadError)
    assert received == [TextDelta("Hel")]


def test_an_error_event_inside_the_stream_is_retryable() -> None:
    body = sse(chunk("Hel"), {"error": {"message": "engine died", "type": "InternalServerError"}})
    error = failure(answer(body), streaming=True)
    assert error.retryable and "engine died" in error.message


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    "body", [b"<html>502 Bad Gateway</html>", b'{"choices": []}', b'{"choices": [{"message": {}}]}']
)
def test_a_200_that_is_not_a_completion_is_retryable(body: bytes, streaming: bool) -> None:
    sent = sse(body.decode()) if streaming else body
    error = failure(answer(sent), streaming)
    assert error.retryable and not isinstance(error, ContextWindowExceeded)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadError("reset"), httpx.RemoteProtocolError("disconnected")],
)
def test_connection_failures_are_retryable(exc: Exception, streaming: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    error = failure(handler, streaming)
    assert error.retryable and error.status is None
    assert not isinstance(error, ProviderTimeout)
    assert error.__cause__ is exc


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    "exc", [httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("full")]
)
def test_timeouts_are_provider_timeouts(exc: Exception, streaming: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    assert isinstance(failure(handler, streaming), ProviderTimeout)


@pytest.mark.parametrize("streaming", [False, True])
def test_429_is_retryable_after_the_seconds_it_names(streaming: bool) -> None:
    handler = error(429, {"error": {"message": "Slow down"}}, {"Retry-After": "7"})
    caught = failure(handler, streaming)
    assert (caught.retryable, caught.status, caught.retry_after) == (True, 429, 7.0)


def test_429_with_an_http_date_waits_until_that_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    caught = failure(error(429, {"error": {"message": "Slow down"}}, {"Retry-After": when}), streaming=False)
    assert caught.retry_after is not None and 115 <= caught.retry_after <= 120


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "inf"}, None),
        ({}, None),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(httpx.Headers(headers)) == seconds


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retryable(status: int, streaming: bool) -> None:
    caught = failure(error(status, {"error": {"message": "boom"}}), streaming)
    assert (caught.retryable, caught.status) == (True, status)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    "payload",
    [
        {  # OpenAI
            "error": {
                "message": "This model's maximum context length is 8192 tokens.",
                "type": "invalid_request_error",
                "code": "context_length_exceeded",
            }
        },
        {  # vLLM, older
            "object": "error",
            "message": "This model's maximum context length is 4096 tokens. However, you requested 5000.",
            "type": "BadRequestError",
            "code": 400,
        },
        {  # llama.cpp server
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
            }
        },
    ],
)
def test_a_prompt_too_long_for_the_window_is_context_window_exceeded(
    payload: dict[str, Any], streaming: bool
) -> None:
    assert isinstance(failure(error(400, payload), streaming), ContextWindowExceeded)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_are_final(status: int, streaming: bool) -> None:
    caught = failure(error(status, {"error": {"message": "temperature must be at most 2"}}), streaming)
    assert (caught.retryable, caught.status) == (False, status)
    assert not isinstance(caught, ContextWindowExceeded)
    assert "temperature must be at most 2" in caught.message


def test_an_error_body_that_is_not_json_still_reaches_the_message() -> None:
    caught = failure(answer(b"upstream exploded", status=500), streaming=False)
    assert caught.retryable and "upstream exploded" in caught.message


def test_aclose_closes_the_client_and_a_later_call_opens_a_new_one() -> None:
    chat = provider(error(200, completion()))

    async def twice() -> None:
        await chat.complete(REQUEST)
        await chat.aclose()
        await chat.complete(REQUEST)
        await chat.aclose()

    asyncio.run(twice())
