"""Tool calls through the wrappers: checked at a stream's end as in a whole answer, exempt from the
structured-output check, never cached, and no content in the trace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from keel.config import CacheSettings
from keel.errors import UpstreamError
from keel.gateway.cache import MemoryResponseCache
from keel.gateway.model import Answer, ChatCall, collect
from keel.gateway.protocol import FunctionCall, ToolCall, Usage
from keel.gateway.providers.base import StreamEnd, StreamEvent, ToolCallPart
from keel.gateway.wrappers.caching import Cached
from keel.gateway.wrappers.repairing import Repaired
from keel.gateway.wrappers.tracing import Traced
from keel.observe import attributes
from tests.unit.gateway.wrappers.fakes import call_of

pytestmark = pytest.mark.unit

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER: dict[str, Any] = {"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}


@dataclass
class CallingModel:
    """Calls get_weather, its arguments in two pieces."""

    arguments: str = '{"city": "Paris"}'
    calls: list[ChatCall] = field(default_factory=list)

    async def open(self, call: ChatCall) -> Answer:
        self.calls.append(call)
        return Answer(self._events())

    async def _events(self) -> AsyncIterator[StreamEvent]:
        yield ToolCallPart(0, id="call_1", name="get_weather")
        yield ToolCallPart(0, self.arguments[:5])
        yield ToolCallPart(0, self.arguments[5:])
        yield StreamEnd("tool_calls", Usage.of(5, 2))


def opened(model: Any, **call: Any) -> Any:
    async def run() -> Any:
        return await collect(await model.open(call_of(**call)))

    return asyncio.run(run())


@pytest.mark.parametrize("stream", [False, True])
def test_repaired_checks_the_calls_whether_streamed_or_not(stream: bool) -> None:
    answer = opened(Repaired(CallingModel()), stream=stream, tools=[WEATHER])
    expected = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
    assert answer.tool_calls == [expected] and answer.text == ""
    with pytest.raises(UpstreamError, match="do not match its schema"):
        opened(Repaired(CallingModel('{"town": "Paris"}')), stream=stream, tools=[WEATHER])


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_call_is_not_held_to_the_requested_json(stream: bool) -> None:
    model = CallingModel()
    answer = opened(Repaired(model), stream=stream, tools=[WEATHER], response_format={"type": "json_object"})
    assert answer.finish_reason == "tool_calls" and len(model.calls) == 1  # no repair asked


def test_a_request_offering_tools_is_neither_served_from_nor_stored_in_the_cache() -> None:
    model = CallingModel()
    cached = Cached(model, MemoryResponseCache(CacheSettings()), lambda: None, lambda: None)
    first, second = call_of(tools=[WEATHER]), call_of(tools=[WEATHER])

    async def twice() -> None:
        await collect(await cached.open(first))
        await collect(await cached.open(second))

    asyncio.run(twice())
    assert len(model.calls) == 2 and second.record.cache == "miss"


def test_traced_captures_no_content_for_an_answer_that_only_calls_tools() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    opened(Traced(CallingModel(), provider.get_tracer("test"), capture_content=True), tools=[WEATHER])
    [span] = exporter.get_finished_spans()
    assert span.attributes is not None
    assert span.attributes[attributes.GEN_AI_COMPLETION] == ""
    assert span.attributes[attributes.GEN_AI_FINISH_REASONS] == ("tool_calls",)


def test_a_value_at_the_captured_prompts_cut_is_redacted_before_the_cut() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    card, mail = "4111 1111 1111 1111", "jonas.weber@example.com"
    for filler in (3990, 3975):  # the cut at 4,000 characters falls inside the card, then the address
        text = "x" * filler + f" {card} {mail} " + "y" * 200
        opened(Traced(CallingModel(), provider.get_tracer("test"), capture_content=True), text=text)
    for span in exporter.get_finished_spans():
        assert span.attributes is not None
        [prompt] = span.attributes[attributes.GEN_AI_PROMPT]  # type: ignore[misc]
        assert len(prompt) <= 4000 and "4111 11" not in prompt and "jona" not in prompt
        assert "<C" in prompt[3970:]  # the card's placeholder, cut or whole
        assert span.attributes[attributes.GEN_AI_PROMPT_ROLES] == ("user",)
