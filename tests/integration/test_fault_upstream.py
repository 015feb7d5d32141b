"""Both remote providers against FaultUpstream, a real HTTP server that fails on purpose: every fault
kind must reach the gateway as the error its retry, breaker and fallback logic expects."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from keel.gateway.protocol import ChatMessage, Tool, Usage
from keel.gateway.providers.anthropic import AnthropicProvider
from keel.gateway.providers.base import (
    ContextWindowExceeded,
    Generation,
    GenerationRequest,
    ProviderError,
    ProviderTimeout,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallPart,
)
from keel.gateway.providers.openai_compat import OpenAICompatibleProvider
from keel.gateway.tools import assemble
from tests.support.fault_upstream import FAULTS, FaultPlan, FaultUpstream, Outcome

Provider = OpenAICompatibleProvider | AnthropicProvider
KINDS = ["openai", "anthropic"]
REQUEST = GenerationRequest(
    messages=[
        ChatMessage(role="system", content="Be brief."),
        ChatMessage(role="user", content="How are you?"),
    ]
)
# "Echo: How are you?" in four deltas; the prompt is five words.
CONNECTION_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError)
ECHO = [TextDelta("Echo:"), TextDelta(" How"), TextDelta(" are"), TextDelta(" you?")]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultUpstream]:
    with FaultUpstream.running() as running:
        yield running


def make(kind: str, upstream: FaultUpstream, timeout_s: float = 5.0) -> Provider:
    if kind == "openai":
        return OpenAICompatibleProvider(upstream.base_url, "echo", api_key="sk-test", timeout_s=timeout_s)
    return AnthropicProvider(upstream.root_url, "echo", api_key="sk-ant", timeout_s=timeout_s)


def call(
    chat: Provider, streaming: bool, request: GenerationRequest = REQUEST
) -> tuple[Generation | list[StreamEvent] | ProviderError, list[StreamEvent]]:
    """The result or the provider error, and every event a stream yielded before it ended."""
    events: list[StreamEvent] = []

    async def run() -> Generation | list[StreamEvent]:
        try:
            if not streaming:
                return await chat.complete(request)
            async for event in chat.stream(request):
                events.append(event)
            return events
        finally:
            await chat.aclose()

    try:
        return asyncio.run(run()), events
    except ProviderError as exc:
        return exc, events


def fails(chat: Provider, streaming: bool) -> ProviderError:
    result, _ = call(chat, streaming)
    assert isinstance(result, ProviderError), result
    return result


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_ok_echoes_the_last_user_message_with_word_count_usage(
    upstream: FaultUpstream, kind: str, streaming: bool
) -> None:
    upstream.set_plan(FaultPlan())
    result, _ = call(make(kind, upstream), streaming)
    if streaming:
        assert result == [*ECHO, StreamEnd("stop", Usage.of(5, 4))]
    else:
        assert result == Generation("Echo: How are you?", "stop", Usage.of(5, 4))
    assert upstream.counts == {"ok": 1}


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_max_tokens_cuts_the_answer_short(upstream: FaultUpstream, kind: str, streaming: bool) -> None:
    upstream.set_plan(FaultPlan())
    request = GenerationRequest(messages=REQUEST.messages, max_tokens=2)
    result, _ = call(make(kind, upstream), streaming, request)
    if streaming:
        assert result == [*ECHO[:2], StreamEnd("length", Usage.of(5, 2))]
    else:
        assert result == Generation("Echo: How", "length", Usage.of(5, 2))


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_500_is_retryable(upstream: FaultUpstream, kind: str, streaming: bool) -> None:
    upstream.set_plan(FaultPlan(script=["500"]))
    error = fails(make(kind, upstream), streaming)
    assert (type(error), error.retryable, error.status) == (ProviderError, True, 500)
    assert upstream.counts == {"500": 1}


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_429_carries_retry_after_as_seconds_or_a_date(
    upstream: FaultUpstream, kind: str, streaming: bool
) -> None:
    upstream.set_plan(FaultPlan(script=["429"], retry_after="3"))
    error = fails(make(kind, upstream), streaming)
    assert (error.retryable, error.status, error.retry_after) == (True, 429, 3.0)
    upstream.set_plan(
        FaultPlan(
            script=["429"], retry_after=format_datetime(datetime.now(UTC) + timedelta(seconds=30), True)
        )
    )
    dated = fails(make(kind, upstream), streaming)
    assert dated.retry_after is not None and 25 <= dated.retry_after <= 30


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_hang_is_a_provider_timeout(upstream: FaultUpstream, kind: str, streaming: bool) -> None:
    upstream.set_plan(FaultPlan(script=["hang"]))
    started = time.monotonic()
    error = fails(make(kind, upstream, timeout_s=0.3), streaming)
    assert isinstance(error, ProviderTimeout) and error.retryable
    assert time.monotonic() - started < 5  # the client's timeout ended it, not the upstream's hang_s


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_drop_is_a_retryable_connection_error(upstream: FaultUpstream, kind: str, streaming: bool) -> None:
    upstream.set_plan(FaultPlan(script=["drop"]))
    error = fails(make(kind, upstream), streaming)
    assert (type(error), error.retryable, error.status) == (ProviderError, True, None)
    assert isinstance(error.__cause__, CONNECTION_ERRORS)


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_partial_is_retryable_after_the_deltas_that_arrived(
    upstream: FaultUpstream, kind: str, streaming: bool
) -> None:
    upstream.set_plan(FaultPlan(script=["partial"], partial_words=2))
    result, events = call(make(kind, upstream), streaming)
    assert isinstance(result, ProviderError) and type(result) is ProviderError and result.retryable
    assert events == (ECHO[:2] if streaming else [])


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_context_is_context_window_exceeded(upstream: FaultUpstream, kind: str, streaming: bool) -> None:
    upstream.set_plan(FaultPlan(script=["context"]))
    error = fails(make(kind, upstream), streaming)
    assert isinstance(error, ContextWindowExceeded) and not error.retryable


@pytest.mark.parametrize("path", ["/chat/completions", "/messages"])
def test_drop_and_partial_are_connection_errors_to_plain_httpx(upstream: FaultUpstream, path: str) -> None:
    upstream.set_plan(FaultPlan(script=["drop", "partial"]))
    body = {"model": "echo", "stream": True, "messages": [{"role": "user", "content": "one two three four"}]}

    async def run() -> list[str]:
        lines: list[str] = []
        async with httpx.AsyncClient(base_url=upstream.base_url) as client:
            with pytest.raises(CONNECTION_ERRORS):
                await client.post(path, json=body)
            with pytest.raises(CONNECTION_ERRORS):
                async with client.stream("POST", path, json=body) as response:
                    assert response.status_code == 200
                    async for line in response.aiter_lines():
                        lines.append(line)
        return lines

    lines = asyncio.run(run())
    assert any("Echo:" in line for line in lines)
    assert not any("[DONE]" in line or "message_stop" in line for line in lines)


def test_a_script_runs_in_order_then_answers_ok(upstream: FaultUpstream) -> None:
    upstream.set_plan(FaultPlan(script=["500", "context", "429"]))
    chat = make("openai", upstream)
    results = [call(chat, streaming=False)[0] for _ in range(4)]
    assert [type(r) for r in results] == [ProviderError, ContextWindowExceeded, ProviderError, Generation]
    assert [r.outcome for r in upstream.received] == ["500", "context", "429", "ok"]


def test_a_seeded_fault_rate_is_reproducible_and_spread_over_the_fault_kinds(upstream: FaultUpstream) -> None:
    plan = FaultPlan(fault_rate=0.3, seed=11, faults=("500", "429", "context", "drop", "partial"))

    async def burst() -> list[Outcome]:
        upstream.set_plan(plan)
        async with httpx.AsyncClient(base_url=upstream.base_url) as client:
            for _ in range(150):
                with contextlib.suppress(httpx.TransportError):
                    await client.post("/chat/completions", json={"messages": []})
        return [request.outcome for request in upstream.received]

    first, second = asyncio.run(burst()), asyncio.run(burst())
    assert first == second
    faults = len(first) - first.count("ok")
    assert 30 <= faults <= 60  # 45 expected
    assert set(first) == {"ok", *plan.faults}


def test_the_default_faults_are_every_kind_but_ok() -> None:
    assert set(FAULTS) == {"500", "429", "hang", "drop", "partial", "context"}


def test_latency_delays_ok_answers_only(upstream: FaultUpstream) -> None:
    upstream.set_plan(FaultPlan(script=["500"], latency_s=0.3))
    started = time.monotonic()
    fails(make("openai", upstream), streaming=False)
    assert time.monotonic() - started < 0.3
    started = time.monotonic()
    call(make("anthropic", upstream), streaming=True)
    assert time.monotonic() - started >= 0.3


def test_requests_are_recorded_with_their_headers_and_body(upstream: FaultUpstream) -> None:
    upstream.set_plan(FaultPlan())
    call(make("openai", upstream), streaming=True)
    call(make("anthropic", upstream), streaming=False)
    openai, anthropic = upstream.received
    assert (openai.path, openai.headers["authorization"], openai.body["stream"]) == (
        "/v1/chat/completions",
        "Bearer sk-test",
        True,
    )
    assert (anthropic.path, anthropic.headers["x-api-key"], anthropic.body["system"]) == (
        "/v1/messages",
        "sk-ant",
        "Be brief.",
    )


def test_models_are_listed_and_not_counted(upstream: FaultUpstream) -> None:
    upstream.set_plan(FaultPlan(script=["500"]))
    listing = httpx.get(f"{upstream.base_url}/models").json()
    assert [model["id"] for model in listing["data"]] == ["fault-upstream"]
    assert upstream.counts == {}


def test_a_reply_replaces_the_echo(upstream: FaultUpstream) -> None:
    upstream.set_plan(FaultPlan(reply='{"answer": 42}'))
    result, _ = call(make("anthropic", upstream), streaming=False)
    assert isinstance(result, Generation) and result.text == '{"answer": 42}'


def test_one_provider_serves_one_event_loop_after_another(upstream: FaultUpstream) -> None:
    upstream.set_plan(FaultPlan())
    chat = OpenAICompatibleProvider(upstream.base_url, "echo", timeout_s=5.0)
    # Each asyncio.run is a new loop; the pooled connection of the first must not serve the second.
    assert asyncio.run(chat.complete(REQUEST)).text == "Echo: How are you?"
    assert asyncio.run(chat.complete(REQUEST)).text == "Echo: How are you?"


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_a_request_offering_tools_is_answered_with_a_call(
    upstream: FaultUpstream, kind: str, streaming: bool
) -> None:
    upstream.set_plan(FaultPlan(tool_arguments={"city": "Oslo"}))
    tool = Tool.model_validate({"type": "function", "function": {"name": "get_weather"}})
    request = GenerationRequest(messages=REQUEST.messages, tools=[tool], tool_choice="required")
    result, _ = call(make(kind, upstream), streaming, request)
    if streaming:
        assert isinstance(result, list) and isinstance(result[-1], StreamEnd)
        assert result[-1].finish_reason == "tool_calls"
        calls = assemble([event for event in result if isinstance(event, ToolCallPart)])
    else:
        assert isinstance(result, Generation) and result.finish_reason == "tool_calls"
        calls = result.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Oslo"})
    ]
    # A conversation that ends with the tool's result gets text again.
    upstream.set_plan(FaultPlan(tool_arguments={"city": "Oslo"}))
    answered = [*REQUEST.messages, ChatMessage(role="assistant", tool_calls=calls)]
    answered.append(ChatMessage(role="tool", tool_call_id=calls[0].id, content="Snow"))
    text, _ = call(make(kind, upstream), False, GenerationRequest(messages=answered, tools=[tool]))
    assert isinstance(text, Generation) and text.tool_calls == [] and text.text.startswith("Echo:")
