"""Tool calling on the remote providers, against httpx.MockTransport: OpenAI-compatible servers get the
tools and tool turns as they are; Anthropic gets them translated (tool_use / tool_result blocks), and
both providers' answers and streams come back as OpenAI tool calls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx

from keel.gateway.protocol import ChatMessage, FunctionCall, NamedToolChoice, Tool, ToolCall
from keel.gateway.providers.anthropic import AnthropicProvider
from keel.gateway.providers.base import ChatProvider, Generation, GenerationRequest, StreamEnd, ToolCallPart
from keel.gateway.providers.openai_compat import OpenAICompatibleProvider
from keel.gateway.tools import assemble

Handler = Callable[[httpx.Request], httpx.Response]

WEATHER = Tool.model_validate(
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
)
CALL = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))
CONVERSATION = [
    ChatMessage(role="system", content="Be brief."),
    ChatMessage(role="user", content="Weather in Paris and Rome?"),
    ChatMessage(role="assistant", content=None, tool_calls=[CALL, CALL.model_copy(update={"id": "call_2"})]),
    ChatMessage(role="tool", tool_call_id="call_1", content="Sunny"),
    ChatMessage(role="tool", tool_call_id="call_2", content="Rain"),
]
ASKED = GenerationRequest(
    messages=CONVERSATION, tools=[WEATHER], tool_choice="required", parallel_tool_calls=False
)


def run(provider: ChatProvider, request: GenerationRequest, streaming: bool) -> Generation | list[Any]:
    async def go() -> Generation | list[Any]:
        if streaming:
            return [event async for event in provider.stream(request)]
        return await provider.complete(request)

    return asyncio.run(go())


def recorded(answer: Callable[[], httpx.Response]) -> tuple[Handler, list[dict[str, Any]]]:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return answer()

    return handler, bodies


def sse(*events: dict[str, Any]) -> httpx.Response:
    text = "".join(f"data: {json.dumps(event)}\n\n" for event in events)
    return httpx.Response(200, text=text, headers={"content-type": "text/event-stream"})


# -- OpenAI-compatible: passed through -----------------------------------------------------------------


def openai(handler: Handler) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider("http://up.test/v1", "m", transport=httpx.MockTransport(handler))


def test_openai_compatible_servers_get_tools_and_tool_turns_as_sent() -> None:
    completion = {
        "choices": [
            {"message": {"content": None, "tool_calls": [CALL.model_dump()]}, "finish_reason": "tool_calls"}
        ],
        "usage": {"prompt_tokens": 9, "completion_tokens": 4},
    }
    handler, bodies = recorded(lambda: httpx.Response(200, json=completion))
    generation = run(openai(handler), ASKED, streaming=False)
    body = bodies[0]
    assert body["tools"] == [WEATHER.model_dump(exclude_none=True)]
    assert body["tool_choice"] == "required" and body["parallel_tool_calls"] is False
    assert body["messages"][2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [CALL.model_dump(), {**CALL.model_dump(), "id": "call_2"}],
    }
    assert body["messages"][3] == {"role": "tool", "content": "Sunny", "tool_call_id": "call_1"}
    assert isinstance(generation, Generation)
    assert generation.tool_calls == [CALL] and generation.finish_reason == "tool_calls"


def test_a_named_choice_is_sent_as_openais_object_and_no_tools_send_none() -> None:
    named = NamedToolChoice.model_validate({"type": "function", "function": {"name": "get_weather"}})
    completion = {
        "choices": [{"message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
    handler, bodies = recorded(lambda: httpx.Response(200, json=completion))
    run(
        openai(handler),
        GenerationRequest(messages=CONVERSATION[:2], tools=[WEATHER], tool_choice=named),
        False,
    )
    run(openai(handler), GenerationRequest(messages=CONVERSATION[:2]), False)
    assert bodies[0]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert "parallel_tool_calls" not in bodies[0]
    assert not {"tools", "tool_choice"} & set(bodies[1])


def test_openai_compatible_streamed_tool_calls_become_parts() -> None:
    opening = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    events: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [opening]}}]},
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city": '}}]}}
            ]
        },
        {
            "choices": [
                {"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}}
            ]
        },
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 3}},
    ]
    parts = run(openai(lambda _: sse(*events)), ASKED, streaming=True)
    assert isinstance(parts, list)
    assert parts[:3] == [
        ToolCallPart(0, "", id="call_1", name="get_weather"),
        ToolCallPart(0, '{"city": '),
        ToolCallPart(0, '"Paris"}'),
    ]
    assert isinstance(parts[3], StreamEnd) and parts[3].finish_reason == "tool_calls"
    assert assemble(parts[:3]) == [CALL]


# -- Anthropic: translated ---------------------------------------------------------------------------


def anthropic(handler: Handler) -> AnthropicProvider:
    return AnthropicProvider("https://anthropic.test", "claude", transport=httpx.MockTransport(handler))


def test_anthropic_gets_tools_choice_tool_use_and_tool_result_blocks() -> None:
    message = {
        "content": [
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 20, "output_tokens": 8},
    }
    handler, bodies = recorded(lambda: httpx.Response(200, json=message))
    generation = run(anthropic(handler), ASKED, streaming=False)
    body = bodies[0]
    assert body["system"] == "Be brief."
    assert body["tools"] == [
        {
            "name": "get_weather",
            "description": "The weather in a city.",
            "input_schema": WEATHER.function.parameters,
        }
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    use = {"type": "tool_use", "name": "get_weather", "input": {"city": "Paris"}}
    assert body["messages"][1:] == [
        {"role": "assistant", "content": [{**use, "id": "call_1"}, {**use, "id": "call_2"}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "Rain"},
            ],
        },
    ]
    assert isinstance(generation, Generation)
    assert generation.text == "Let me look." and generation.finish_reason == "tool_calls"
    assert generation.tool_calls == [
        ToolCall(id="toolu_1", function=FunctionCall(name="get_weather", arguments='{"city": "Oslo"}'))
    ]


def test_anthropic_tool_choices() -> None:
    def choice_for(tool_choice: Any, parallel: bool = True) -> Any:
        message = {
            "content": [{"type": "text", "text": "ok"}],
            "usage": {"input_tokens": 1, "output_tokens": 1},
        }
        handler, bodies = recorded(lambda: httpx.Response(200, json=message))
        request = GenerationRequest(
            messages=CONVERSATION[:2], tools=[WEATHER], tool_choice=tool_choice, parallel_tool_calls=parallel
        )
        run(anthropic(handler), request, streaming=False)
        return bodies[0]["tool_choice"]

    named = NamedToolChoice.model_validate({"type": "function", "function": {"name": "get_weather"}})
    assert choice_for("auto") == {"type": "auto"}
    assert choice_for("none", parallel=False) == {"type": "none"}
    assert choice_for(named) == {"type": "tool", "name": "get_weather"}


def test_anthropic_streamed_tool_use_becomes_parts_numbered_by_call() -> None:
    usage = {"input_tokens": 12, "output_tokens": 1}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"usage": usage}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Looking."}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city":'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ' "Oslo"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
        },
        {"type": "content_block_stop", "index": 2},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]
    events_out = run(anthropic(lambda _: sse(*events)), ASKED, streaming=True)
    assert isinstance(events_out, list)
    parts = [event for event in events_out if isinstance(event, ToolCallPart)]
    assert parts == [
        ToolCallPart(0, id="toolu_1", name="get_weather"),
        ToolCallPart(0, '{"city":'),
        ToolCallPart(0, ' "Oslo"}'),
        ToolCallPart(1, id="toolu_2", name="get_weather"),
        ToolCallPart(1, "{}"),  # a call without arguments sends none: an empty object stands for them
    ]
    end = events_out[-1]
    assert (
        isinstance(end, StreamEnd) and end.finish_reason == "tool_calls" and end.usage.completion_tokens == 9
    )
