"""Tool calling in the gateway: requests checked (400s naming the parameter), model calls checked against
the tools, streamed calls in OpenAI's chunk shape, and the local model's rendering, rule and grammar."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from keel.errors import InvalidRequestError, UpstreamError
from keel.gateway.protocol import ChatMessage, FunctionCall, Tool, ToolCall, Usage
from keel.gateway.providers.base import Generation, GenerationRequest, StreamEnd, StreamEvent, ToolCallPart
from keel.gateway.providers.local_tools import (
    ToolPlan,
    grammar,
    grammar_schema,
    parse_calls,
    plan,
    template_messages,
)
from keel.gateway.service import Caller
from keel.gateway.structured import generation_request
from keel.gateway.tools import restore_arguments
from tests.unit.gateway.doubles import chat_request, local, make_gateway

CALLER = Caller(tenant="acme", key_id="key_1")
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
WEATHER: dict[str, Any] = {"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}
CALL = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments='{"city": "Paris"}'))


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "tool_choice",
        ),
        ({"tools": [WEATHER, WEATHER]}, "tools"),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
            "tools",
        ),
        (
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "nope"}}}]},
            "tools",
        ),
    ],
)
def test_a_tool_request_that_cannot_be_honoured_is_a_400_naming_the_parameter(
    body: dict[str, Any], param: str
) -> None:
    with pytest.raises(InvalidRequestError) as refused:
        generation_request(chat_request(**body))
    assert refused.value.param == param and refused.value.status_code == 400


def test_a_tool_message_needs_the_call_it_answers() -> None:
    with pytest.raises(ValueError, match="tool_call_id"):
        chat_request(messages=[{"role": "tool", "content": "x"}])


class ToolModel:
    """A model that calls get_weather, in two argument pieces when streaming."""

    is_ready = True

    def __init__(self, arguments: str = '{"city": "Paris"}') -> None:
        self.arguments = arguments

    async def complete(self, request: GenerationRequest) -> Generation:
        call = ToolCall(id="call_1", function=FunctionCall(name="get_weather", arguments=self.arguments))
        return Generation("", "tool_calls", Usage.of(5, 2), [call])

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        yield ToolCallPart(0, id="call_1", name="get_weather")
        yield ToolCallPart(0, self.arguments[:5])
        yield ToolCallPart(0, self.arguments[5:])
        yield StreamEnd("tool_calls", Usage.of(5, 2))


def test_a_call_is_answered_in_openais_shape(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, {"d": (ToolModel(), local())})
    completion, _ = asyncio.run(gateway.chat(chat_request(tools=[WEATHER], tool_choice="required"), CALLER))
    body = completion.model_dump(mode="json")["choices"][0]
    assert body["finish_reason"] == "tool_calls"
    assert body["message"] == {"role": "assistant", "content": None, "tool_calls": [CALL.model_dump()]}


def test_a_streamed_call_names_itself_once_then_adds_arguments(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, {"d": (ToolModel(), local())})

    async def collect() -> list[dict[str, Any]]:
        stream = gateway.chat_stream(chat_request(tools=[WEATHER], stream=True), CALLER)
        return [json.loads(chunk.model_dump_json()) async for chunk in stream]

    chunks = collect_chunks = asyncio.run(collect())
    deltas = [c["choices"][0]["delta"] for c in collect_chunks if c["choices"]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls == [
        {
            "index": 0,
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ""},
        },
        {"index": 0, "function": {"arguments": '{"cit'}},
        {"index": 0, "function": {"arguments": 'y": "Paris"}'}},
    ]
    assert "tool_calls" not in deltas[0]  # the role chunk, as before
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("arguments", ['{"town": "Paris"}', "[1]", '{"city": '])
def test_arguments_that_do_not_match_the_schema_are_an_upstream_error(tmp_path: Path, arguments: str) -> None:
    gateway = make_gateway(tmp_path, {"d": (ToolModel(arguments), local())})
    with pytest.raises(UpstreamError) as failed:
        asyncio.run(gateway.chat(chat_request(tools=[WEATHER]), CALLER))
    assert failed.value.code == "invalid_model_output" and "get_weather" in failed.value.message


def test_a_call_where_none_was_allowed_is_an_upstream_error(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path, {"d": (ToolModel(), local())})
    with pytest.raises(UpstreamError, match="allowed none"):
        asyncio.run(gateway.chat(chat_request(tools=[WEATHER], tool_choice="none"), CALLER))


# -- the local model ------------------------------------------------------------------------------


def local_request(*messages: ChatMessage, **options: Any) -> GenerationRequest:
    return GenerationRequest(messages=list(messages), tools=[Tool.model_validate(WEATHER)], **options)


QUESTION = ChatMessage(role="user", content="Weather in Paris?")
RESULT = ChatMessage(role="tool", tool_call_id="call_1", content="Sunny")


def test_the_rule_calls_a_tool_unless_the_conversation_ends_with_its_result() -> None:
    answered = [QUESTION, ChatMessage(role="assistant", tool_calls=[CALL]), RESULT]
    assert plan(local_request(QUESTION)) == ToolPlan([Tool.model_validate(WEATHER)], 4)
    assert plan(local_request(*answered)) is None
    assert plan(local_request(*answered, tool_choice="required")) is not None
    assert plan(local_request(QUESTION, tool_choice="none")) is None
    assert plan(local_request(QUESTION, parallel_tool_calls=False)) == ToolPlan(
        [Tool.model_validate(WEATHER)], 1
    )


def test_a_template_without_tools_gets_them_in_the_system_prompt_and_results_as_user_turns() -> None:
    request = local_request(
        ChatMessage(role="system", content="Be brief."),
        QUESTION,
        ChatMessage(role="assistant", tool_calls=[CALL]),
        RESULT,
    )
    messages = template_messages(request, template_knows_tools=False)
    assert messages[0]["role"] == "system" and messages[0]["content"].startswith("Be brief.\n\nYou can call")
    assert "get_weather" in messages[0]["content"] and json.dumps(SCHEMA) in messages[0]["content"]
    assert messages[2] == {
        "role": "assistant",
        "content": '[{"name": "get_weather", "arguments": {"city": "Paris"}}]',
    }
    assert messages[3] == {"role": "user", "content": "Result of get_weather: Sunny"}
    native = template_messages(request, template_knows_tools=True)
    assert native[2]["tool_calls"][0]["function"] == {"name": "get_weather", "arguments": {"city": "Paris"}}
    assert native[3] == {"role": "tool", "content": "Sunny", "tool_call_id": "call_1"}


def test_the_grammar_schema_moves_each_tools_definitions_to_the_top_and_bounds_strings() -> None:
    parameters = {
        "type": "object",
        "properties": {"item": {"$ref": "#/$defs/Item"}, "note": {"type": "string", "maxLength": 10}},
        "$defs": {"Item": {"type": "object", "properties": {"sku": {"type": "string"}}}},
    }
    tool = Tool.model_validate({"type": "function", "function": {"name": "order", "parameters": parameters}})
    schema = grammar_schema(ToolPlan([Tool.model_validate(WEATHER), tool], 2))
    second = schema["items"]["anyOf"][1]["properties"]
    assert second["name"] == {"const": "order"}
    assert second["arguments"]["properties"]["item"] == {"$ref": "#/$defs/t1_Item"}
    assert second["arguments"]["properties"]["note"]["maxLength"] == 10
    assert schema["$defs"]["t1_Item"]["properties"]["sku"]["maxLength"] == 120
    assert schema["maxItems"] == 2
    assert 'char ::= [^"\\\\\\x7F\\x00-\\x1F]' in grammar(ToolPlan([tool], 1))  # no raw control characters


def test_calls_are_parsed_once_each() -> None:
    text = json.dumps([{"name": "get_weather", "arguments": {"city": "Paris"}}] * 2)
    calls = parse_calls(text)
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert calls[0].id.startswith("call_")
    with pytest.raises(UpstreamError, match="max_tokens"):
        parse_calls('[{"name": "get_weather", "argu')


def test_pseudonyms_in_a_calls_arguments_are_put_back_value_by_value() -> None:
    call = ToolCall(
        id="c", function=FunctionCall(name="f", arguments='{"who": "<PERSON_1>", "n": [1, "<PERSON_1>"]}')
    )
    restored = restore_arguments(call, lambda text: text.replace("<PERSON_1>", 'Ada "the" Lovelace'))
    assert json.loads(restored.function.arguments) == {
        "who": 'Ada "the" Lovelace',
        "n": [1, 'Ada "the" Lovelace'],
    }
    assert restore_arguments(call, lambda text: text) is call
