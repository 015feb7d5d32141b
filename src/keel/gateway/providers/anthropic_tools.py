"""OpenAI's tool calling in Anthropic's Messages API: tool definitions and the tool choice, assistant
`tool_calls` as `tool_use` blocks, `tool` messages as `tool_result` blocks of a user turn (consecutive
results in one turn, as Anthropic asks), and `tool_use` blocks back as OpenAI tool calls."""

from __future__ import annotations

import json
from typing import Any

from keel.gateway.protocol import ChatMessage, FunctionCall, NamedToolChoice, ToolCall
from keel.gateway.providers.base import GenerationRequest


def tool_options(request: GenerationRequest) -> dict[str, Any]:
    """`tools` and `tool_choice` for the request body; nothing when the request offers no tools."""
    if not request.tools:
        return {}
    tools = [
        {
            "name": tool.function.name,
            "description": tool.function.description or "",
            "input_schema": tool.function.parameters,
        }
        for tool in request.tools
    ]
    choice: dict[str, Any]
    if isinstance(request.tool_choice, NamedToolChoice):
        choice = {"type": "tool", "name": request.tool_choice.function.name}
    else:
        choice = {"type": {"auto": "auto", "required": "any", "none": "none"}[request.tool_choice]}
    if not request.parallel_tool_calls and choice["type"] != "none":
        choice["disable_parallel_tool_use"] = True
    return {"tools": tools, "tool_choice": choice}


def wire_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The conversation without its system turns (they go to `system`), in Anthropic's user and
    assistant turns; a tool result is something the user side says."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        if message.role in ("system", "developer"):
            continue
        if message.role == "tool":
            result = {"type": "tool_result", "tool_use_id": message.tool_call_id, "content": message.text()}
            if wire and wire[-1]["role"] == "user" and isinstance(wire[-1]["content"], list):
                wire[-1]["content"].append(result)
            else:
                wire.append({"role": "user", "content": [result]})
        elif message.role == "assistant" and message.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": message.text()}] if message.text() else []
            )
            blocks += [
                {"type": "tool_use", "id": call.id, "name": call.function.name, "input": _input(call)}
                for call in message.tool_calls
            ]
            wire.append({"role": "assistant", "content": blocks})
        else:
            wire.append(
                {"role": "assistant" if message.role == "assistant" else "user", "content": message.text()}
            )
    return wire


def tool_calls(uses: list[tuple[str, str, Any]]) -> list[ToolCall]:
    """(id, name, input) of each `tool_use` block, as OpenAI tool calls."""
    return [
        ToolCall(
            id=use_id,
            function=FunctionCall(name=name, arguments=json.dumps(value if value is not None else {})),
        )
        for use_id, name, value in uses
    ]


def _input(call: ToolCall) -> Any:
    try:
        return json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError:
        return {}  # arguments a model wrote badly earlier: Anthropic requires an object
