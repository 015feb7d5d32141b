"""Tool calling, whatever the deployment: a request's tools and tool choice checked before any model sees
them, a streamed call assembled from its pieces, and every call a model makes checked against the tools
(a known function, arguments that are a JSON object valid against its parameters' schema)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import jsonschema

from keel.errors import InvalidRequestError, UpstreamError
from keel.gateway.protocol import (
    ChatCompletionRequest,
    FunctionCall,
    FunctionCallDelta,
    NamedToolChoice,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from keel.gateway.providers.base import (
    Generation,
    GenerationRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallPart,
)
from keel.gateway.schema_check import check_response_schema
from keel.guard.json_strings import json_strings, map_json_strings


def call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


def check_tools(request: ChatCompletionRequest) -> None:
    """400s naming the parameter: a tool choice without tools, a choice of a function no tool declares,
    two tools of one name, parameters that are not a usable JSON schema."""
    tools = request.tools or []
    choice = request.tool_choice
    if not tools and choice not in (None, "none", "auto"):
        raise InvalidRequestError(
            "'tool_choice' needs 'tools' to choose from.", code="invalid_tool_choice", param="tool_choice"
        )
    names = [tool.function.name for tool in tools]
    if len(set(names)) != len(names):
        duplicate = next(name for name in names if names.count(name) > 1)
        raise InvalidRequestError(
            f"Two tools are named '{duplicate}'; tool names must be unique.",
            code="invalid_tools",
            param="tools",
        )
    if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
        raise InvalidRequestError(
            f"'tool_choice' names the function '{choice.function.name}', which no tool declares.",
            code="invalid_tool_choice",
            param="tool_choice",
        )
    for index, tool in enumerate(tools):
        if tool.function.parameters.get("type", "object") != "object":
            raise InvalidRequestError(
                f'tools[{index}].function.parameters must describe an object ("type": "object").',
                code="invalid_json_schema",
                param="tools",
            )
        check_response_schema(
            tool.function.parameters, where=f"tools[{index}].function.parameters", param="tools"
        )


def restore_arguments(call: ToolCall, restore: Callable[[str], str]) -> ToolCall:
    """The call with the personal data that was pseudonymised on the way out put back into its arguments,
    value by value, so the JSON stays valid whatever the values hold."""
    return map_argument_strings(call, restore)


def argument_strings(call: ToolCall) -> list[str]:
    """The string values in a call's arguments, in the order `map_argument_strings` visits them (none
    when the arguments are not JSON)."""
    return json_strings(call.function.arguments)


def map_argument_strings(call: ToolCall, change: Callable[[str], str]) -> ToolCall:
    """The call with every string value in its arguments changed (keys and other values kept), so the JSON
    stays valid whatever the change writes. Arguments that are not JSON are kept as they are (checked,
    and refused, later)."""
    changed = map_json_strings(call.function.arguments, change)
    if changed == call.function.arguments:
        return call
    return call.model_copy(update={"function": call.function.model_copy(update={"arguments": changed})})


def assemble(parts: list[ToolCallPart]) -> list[ToolCall]:
    """The calls a stream's parts make up, in the order of their index."""
    calls: dict[int, dict[str, str]] = {}
    for part in parts:
        call = calls.setdefault(part.index, {"id": "", "name": "", "arguments": ""})
        call["id"] = part.id or call["id"]
        call["name"] = part.name or call["name"]
        call["arguments"] += part.arguments
    return [
        ToolCall(
            id=call["id"] or call_id(), function=FunctionCall(name=call["name"], arguments=call["arguments"])
        )
        for _, call in sorted(calls.items())
    ]


async def collected(events: AsyncIterator[StreamEvent]) -> Generation:
    """A stream's events gathered into one generation: its text, its tool calls assembled, its end."""
    pieces: list[str] = []
    parts: list[ToolCallPart] = []
    end: StreamEnd | None = None
    async for event in events:
        if isinstance(event, TextDelta):
            pieces.append(event.text)
        elif isinstance(event, ToolCallPart):
            parts.append(event)
        else:
            end = event
    assert end is not None, "a stream ends with StreamEnd"
    return Generation("".join(pieces), end.finish_reason, end.usage, assemble(parts))


def tool_call_parts(calls: list[ToolCall]) -> list[ToolCallPart]:
    """Whole calls as parts, one each: a whole answer flows through the gateway as a stream does."""
    return [
        ToolCallPart(index, call.function.arguments, call.id, call.function.name)
        for index, call in enumerate(calls)
    ]


def tool_call_chunk(part: ToolCallPart) -> ToolCallDelta:
    """A part in OpenAI's chunk shape: the call's first part names it, the others add arguments."""
    if part.id is not None or part.name is not None:
        return ToolCallDelta(
            index=part.index,
            id=part.id,
            type="function",
            function=FunctionCallDelta(name=part.name, arguments=part.arguments),
        )
    return ToolCallDelta(index=part.index, function=FunctionCallDelta(arguments=part.arguments))


def check_tool_calls(calls: list[ToolCall], request: GenerationRequest) -> None:
    """Raise when a model's tool calls do not honour the request: an unknown or unchosen function,
    arguments that are not a JSON object valid against its schema, no call where one was required."""
    if not calls:
        if request.tools and (
            request.tool_choice == "required" or isinstance(request.tool_choice, NamedToolChoice)
        ):
            raise _invalid("The model answered without the tool call the request required.")
        return
    if not request.tools or request.tool_choice == "none":
        raise _invalid("The model called a tool although the request allowed none.")
    tools = {tool.function.name: tool for tool in request.tools}
    if isinstance(request.tool_choice, NamedToolChoice):
        tools = {request.tool_choice.function.name: tools[request.tool_choice.function.name]}
    for call in calls:
        tool = tools.get(call.function.name)
        if tool is None:
            raise _invalid(f"The model called '{call.function.name}', a function the request does not offer.")
        _check_arguments(call, tool)


def _check_arguments(call: ToolCall, tool: Tool) -> None:
    try:
        arguments: Any = json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError as exc:
        raise _invalid(
            f"The arguments of the call to '{call.function.name}' are not valid JSON ({exc.msg}); "
            "the model may have hit max_tokens."
        ) from exc
    if not isinstance(arguments, dict):
        raise _invalid(f"The arguments of the call to '{call.function.name}' are not a JSON object.")
    validator = jsonschema.Draft202012Validator(tool.function.parameters)
    errors = sorted(validator.iter_errors(arguments), key=lambda e: list(e.path))
    if errors:
        problem = errors[0].message
        raise _invalid(
            f"The arguments of the call to '{call.function.name}' do not match its schema: {problem}"
        )


def _invalid(message: str) -> UpstreamError:
    return UpstreamError(message, code="invalid_model_output")
