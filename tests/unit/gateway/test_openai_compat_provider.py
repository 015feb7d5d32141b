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

from keel.gateway.protocol import ChatMessage, FinishReason, Usage
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
from keel.gateway.providers.openai_compat import (
    OpenAICompatibleProvider,
    UpstreamHttp,
    json_bytes,
    parse_retry_after,
)

Handler = Callable[[httpx.Request], httpx.Response]

MESSAGES = [ChatMessage(role="developer", content="Be brief."), ChatMessage(role="user", content="Hi there")]
REQUEST = GenerationRequest(messages=MESSAGES)
OPTIONS: dict[str, Any] = {"max_tokens": 64, "temperature": 0.2, "top_p": 0.9, "stop": ["\n\n"], "seed": 7}
OPTIONS |= {"presence_penalty": 0.5, "frequency_penalty": -0.5}


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
    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
    return {"choices": [choice], "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    choice = {"index": 0, "delta": {} if content is None else {"content": content}, "finish_reason": finish}
    return {"object": "chat.completion.chunk", "choices": [choice]}


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}


def end(prompt: int, completion: int) -> StreamEnd:
    return StreamEnd("stop", Usage.of(prompt, completion))


def sse(*events: dict[str, Any] | str) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


def answer(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, content=body, headers=headers)


def respond(status: int, payload: Any, headers: dict[str, str] | None = None) -> Handler:
    return answer(json.dumps(payload).encode(), status, headers)


def recording(payload: dict[str, Any] | bytes) -> tuple[Handler, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=payload if isinstance(payload, bytes) else json.dumps(payload))

    return handler, seen


async def cut_after(sent: bytes) -> AsyncIterator[bytes]:
    """A body that sends some bytes, then fails as a reset connection does."""
    yield sent
    raise httpx.ReadError("Connection reset by peer")


def test_the_request_carries_every_sampling_option_and_the_key() -> None:
    handler, seen = recording(completion())
    complete(handler, GenerationRequest(messages=MESSAGES, **OPTIONS))
    assert str(seen[0].url) == "http://upstream.test/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-test"
    # "developer" goes out as "system", which every OpenAI-compatible server knows.
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi there"}]
    assert json.loads(seen[0].content) == {"model": "qwen2.5", "messages": messages, **OPTIONS}


def test_unset_options_are_left_out_and_no_key_sends_no_authorization() -> None:
    handler, seen = recording(completion())
    transport = httpx.MockTransport(handler)
    keyless = OpenAICompatibleProvider("http://ollama.test/v1/", "llama3", timeout_s=5.0, transport=transport)
    asyncio.run(keyless.complete(REQUEST))
    assert str(seen[0].url) == "http://ollama.test/v1/chat/completions"
    assert "authorization" not in seen[0].headers
    assert set(json.loads(seen[0].content)) == {"model", "messages"}


SCHEMA = {"type": "object", "required": ["answer"]}
SCHEMA_FORMAT = {"type": "json_schema", "json_schema": {"name": "response", "schema": SCHEMA}}


@pytest.mark.parametrize(
    ("options", "response_format"),
    [({"json_schema": SCHEMA}, SCHEMA_FORMAT), ({"json_mode": True}, {"type": "json_object"})],
)
def test_structured_output_asks_for_a_response_format(
    options: dict[str, Any], response_format: dict[str, Any]
) -> None:
    handler, seen = recording(completion('{"answer": 42}'))
    complete(handler, GenerationRequest(messages=MESSAGES, **options))
    assert json.loads(seen[0].content)["response_format"] == response_format


@pytest.mark.parametrize(
    ("upstream", "ours"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("content_filter", "content_filter"),
        ("tool_calls", "tool_calls"),
        ("eos", "stop"),
    ],
)
def test_a_completion_gives_text_finish_reason_and_usage(upstream: str, ours: FinishReason) -> None:
    assert complete(respond(200, completion("Hello!", upstream))) == Generation(
        "Hello!", ours, Usage.of(12, 3)
    )


def test_a_stream_yields_deltas_then_one_end_with_the_upstreams_usage() -> None:
    body = sse(chunk("Hel"), chunk("lo"), chunk(finish="stop"), usage_chunk(9, 2), "[DONE]")
    handler, seen = recording(body)
    assert stream(handler) == [TextDelta("Hel"), TextDelta("lo"), end(9, 2)]
    sent = json.loads(seen[0].content)
    assert (sent["stream"], sent["stream_options"]) == (True, {"include_usage": True})


def test_sse_comments_event_lines_and_multi_line_data_are_handled() -> None:
    split = b'data: {"choices": [{"index": 0,\ndata: "delta": {}, "finish_reason": "length"}]}\n\n'
    body = b": keep-alive\n\nevent: chunk\nid: 1\n" + sse(chunk("Hi")) + split + b"data: [DONE]\n\n"
    assert stream(answer(body)) == [TextDelta("Hi"), StreamEnd("length", Usage.of(0, 1))]


@pytest.mark.parametrize(
    ("body", "last"),
    [
        # No usage chunk: the deltas count the completion, and the uncounted prompt stays 0.
        (sse(chunk("One"), chunk(" two"), chunk(" three", "stop"), "[DONE]"), end(0, 3)),
        (sse(chunk("Hi"), "[DONE]"), end(0, 1)),  # [DONE] without a finish reason ends it too
        (sse(chunk("Hi"), chunk(finish="stop"), usage_chunk(4, 1)), end(4, 1)),  # and a finish without [DONE]
    ],
)
def test_a_stream_ends_on_a_finish_reason_or_done(body: bytes, last: StreamEnd) -> None:
    assert stream(answer(body))[-1] == last


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (sse(chunk("Hel"), chunk("lo")), "before it finished"),
        (
            sse(chunk("Hel"), {"error": {"message": "engine died", "type": "InternalServerError"}}),
            "engine died",
        ),
    ],
)
def test_a_stream_that_breaks_off_or_sends_an_error_is_retryable(body: bytes, says: str) -> None:
    error = failure(answer(body), streaming=True)
    assert error.retryable and says in error.message


def test_a_stream_cut_by_a_read_error_is_retryable_after_its_deltas() -> None:
    received: list[StreamEvent] = []

    async def consume() -> None:
        chat = provider(lambda request: httpx.Response(200, content=cut_after(sse(chunk("Hel")))))
        async for event in chat.stream(REQUEST):
            received.append(event)

    with pytest.raises(ProviderError) as caught:
        asyncio.run(consume())
    assert caught.value.retryable and isinstance(caught.value.__cause__, httpx.ReadError)
    assert received == [TextDelta("Hel")]


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("body", [b"<html>502 Bad Gateway</html>", b'{"choices": []}', b'{"choices": [{}]}'])
def test_a_200_that_is_not_a_completion_is_retryable(body: bytes, streaming: bool) -> None:
    error = failure(answer(sse(body.decode()) if streaming else body), streaming)
    assert error.retryable and not isinstance(error, ContextWindowExceeded)


CONNECTION_FAILURES = [
    httpx.ConnectError("refused"),
    httpx.ReadError("reset"),
    httpx.RemoteProtocolError("gone"),
]
TIMEOUTS = [httpx.ReadTimeout("slow"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("full")]


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    ("exc", "want"),
    [(exc, ProviderError) for exc in CONNECTION_FAILURES] + [(exc, ProviderTimeout) for exc in TIMEOUTS],
)
def test_transport_failures_are_retryable(exc: Exception, want: type[ProviderError], streaming: bool) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    error = failure(handler, streaming)
    assert (type(error), error.retryable, error.status, error.__cause__) == (want, True, None, exc)


@pytest.mark.parametrize("streaming", [False, True])
def test_429_is_retryable_after_retry_after_in_seconds_or_as_a_date(streaming: bool) -> None:
    caught = failure(respond(429, {"error": {"message": "Slow down"}}, {"Retry-After": "7"}), streaming)
    assert (caught.retryable, caught.status, caught.retry_after) == (True, 429, 7.0)
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    dated = failure(respond(429, {"error": {"message": "Slow down"}}, {"Retry-After": when}), streaming)
    assert dated.retry_after is not None and 115 <= dated.retry_after <= 120


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
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
def test_server_errors_are_retryable_and_keep_a_body_that_is_not_json(status: int, streaming: bool) -> None:
    caught = failure(answer(b"upstream exploded", status), streaming)
    assert (caught.retryable, caught.status) == (True, status)
    assert "upstream exploded" in caught.message


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize(
    "payload",
    [
        {"error": {"message": "Your messages resulted in 9000 tokens.", "code": "context_length_exceeded"}},
        {"object": "error", "message": "This model's maximum context length is 4096 tokens.", "code": 400},
        {"error": {"code": 400, "message": "the request exceeds the available context size"}},  # llama.cpp
    ],
)
def test_a_prompt_too_long_is_context_window_exceeded(payload: dict[str, Any], streaming: bool) -> None:
    assert isinstance(failure(respond(400, payload), streaming), ContextWindowExceeded)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_other_client_errors_are_final(status: int, streaming: bool) -> None:
    caught = failure(respond(status, {"error": {"message": "temperature must be at most 2"}}), streaming)
    assert (type(caught), caught.retryable, caught.status) == (ProviderError, False, status)
    assert "temperature must be at most 2" in caught.message


def test_a_ready_chat_provider_whose_aclose_lets_a_later_call_open_a_new_client() -> None:
    chat: ChatProvider = provider(respond(200, completion()))
    assert chat.is_ready
    assert isinstance(chat, OpenAICompatibleProvider)

    async def twice() -> None:
        for _ in range(2):
            await chat.complete(REQUEST)
            await chat.aclose()

    asyncio.run(twice())


@pytest.mark.parametrize(
    ("base_url", "path"),
    [
        ("http://upstream.test/v1", "/chat/completions"),
        ("http://upstream.test/v1/", "/chat/completions"),
        ("https://api.example.test", "/v1/messages"),
        ("http://127.0.0.1:8080/openai/v1", "embeddings"),
    ],
)
def test_a_parsed_url_is_the_one_httpx_would_merge(base_url: str, path: str) -> None:
    http = UpstreamHttp(lambda: httpx.AsyncClient(base_url=base_url), base_url)
    merged = httpx.AsyncClient(base_url=base_url.rstrip("/")).build_request("POST", path).url
    assert http.url(path) == merged
    assert http.url(path) is http.url(path)  # parsed once


def test_a_body_is_encoded_as_httpx_would_encode_it() -> None:
    message = {"role": "user", "content": 'Grüße, 東京 \u2013 "quoted"\n'}
    body = {"model": "m", "messages": [message], "n": 1.5}
    sent = json_bytes(body)
    assert json.loads(sent) == body
    assert sent == httpx.Request("POST", "http://x", json=body).content  # compact and UTF-8, byte for byte
