"""One contract for every chat provider: the local model, and the OpenAI-compatible and Anthropic
providers against the fault upstream (a real HTTP server, answering normally here), through the same
cases."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from keel.config import Settings
from keel.gateway.protocol import ChatMessage
from keel.gateway.providers.anthropic import AnthropicProvider
from keel.gateway.providers.base import (
    ChatProvider,
    Generation,
    GenerationRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from keel.gateway.providers.local import LocalChatProvider
from keel.gateway.providers.openai_compat import OpenAICompatibleProvider
from tests.support.fault_upstream import FaultUpstream

REQUEST = GenerationRequest(
    messages=[ChatMessage(role="system", content="Be brief."), ChatMessage(role="user", content="Say hi.")],
    max_tokens=8,
    temperature=0.0,
)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FaultUpstream]:
    with FaultUpstream.running() as running:
        yield running


@pytest.fixture(scope="module")
def local_model(tmp_path_factory: pytest.TempPathFactory) -> LocalChatProvider:
    settings = Settings(data_dir=tmp_path_factory.mktemp("keel-data"))
    provider = LocalChatProvider(
        Path(settings.chat.resolved_model_path()),
        n_ctx=settings.chat.n_ctx,
        n_threads=settings.chat.n_threads,
        default_max_tokens=8,
        parallel=1,
    )
    provider.warm_up()
    return provider


@pytest.fixture(params=["local", "openai", "anthropic"])
def provider(request: pytest.FixtureRequest) -> ChatProvider:
    if request.param == "local":
        model: ChatProvider = request.getfixturevalue("local_model")
        return model
    upstream: FaultUpstream = request.getfixturevalue("upstream")
    if request.param == "openai":
        return OpenAICompatibleProvider(upstream.base_url, "echo", api_key="sk-test", timeout_s=10)
    return AnthropicProvider(upstream.root_url, "echo", api_key="sk-ant", timeout_s=10)


async def _stream(provider: ChatProvider, request: GenerationRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(request)]


def test_it_is_ready(provider: ChatProvider) -> None:
    assert provider.is_ready


def test_a_completion_has_text_a_finish_reason_and_usage(provider: ChatProvider) -> None:
    generation = asyncio.run(provider.complete(REQUEST))
    assert isinstance(generation, Generation) and generation.text.strip()
    assert generation.finish_reason in ("stop", "length")
    usage = generation.usage
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 8
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_a_stream_is_text_deltas_then_exactly_one_end(provider: ChatProvider) -> None:
    events = asyncio.run(_stream(provider, REQUEST))
    *deltas, end = events
    assert deltas and all(isinstance(d, TextDelta) for d in deltas)
    assert isinstance(end, StreamEnd) and end.finish_reason in ("stop", "length")
    assert end.usage.prompt_tokens > 0 and end.usage.completion_tokens > 0


def test_a_stream_says_what_the_completion_says(provider: ChatProvider) -> None:
    whole = asyncio.run(provider.complete(REQUEST))
    streamed = asyncio.run(_stream(provider, REQUEST))
    text = "".join(e.text for e in streamed if isinstance(e, TextDelta))
    assert text.strip() == whole.text.strip()


def test_a_stream_closed_after_its_first_delta_ends_cleanly(provider: ChatProvider) -> None:
    async def first_then_close() -> StreamEvent:
        events = aiter(provider.stream(REQUEST))
        first = await anext(events)
        await events.aclose()  # type: ignore[attr-defined]
        return first

    assert isinstance(asyncio.run(first_then_close()), TextDelta)
    # The provider serves the next call as before.
    assert asyncio.run(provider.complete(REQUEST)).text.strip()
