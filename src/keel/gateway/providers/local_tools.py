"""Tool calling on the local model: the conversation rendered for its chat template, the decision to call
a tool or answer in text, and the generation grammar that makes a call well formed.

Rendering: a template that knows tools (it mentions `tools`, as Qwen's and Llama 3's do) gets the tool
definitions, the assistant's `tool_calls` and `tool` messages as they come. One that does not (SmolLM2's
ChatML) gets the definitions in a system message, past calls as the JSON the model would write, and each
tool result as a user message naming the function it came from.

When to call: `none` never, `required` and a named function always, and `auto` by one rule: call a tool
unless the conversation ends with tool results, then answer them in text. A small model cannot be trusted
to choose, and the rule gives the usual loop (question → call → result → answer).

The call: a JSON array of `{"name", "arguments"}` objects, one call when `parallel_tool_calls` is false
and at most `MAX_PARALLEL_CALLS` otherwise, generated under a llama.cpp grammar built from the tools'
parameter schemas; strings without a `maxLength` are bounded in the grammar (a small model loops inside
strings until it runs out of tokens), not in the validation that follows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from keel.errors import UpstreamError
from keel.gateway.protocol import ChatMessage, FunctionCall, NamedToolChoice, Tool, ToolCall
from keel.gateway.providers.base import GenerationRequest
from keel.gateway.tools import call_id

MAX_PARALLEL_CALLS = 4
# The grammar's bound on a string without one.
GRAMMAR_MAX_STRING = 120
_CALL_FORMAT = (
    'To call tools, answer with only a JSON array of calls: [{"name": <tool name>, "arguments": '
    "<arguments as a JSON object>}]. When a tool's result is given, answer the user in plain text."
)


@dataclass(frozen=True)
class ToolPlan:
    """This generation is a tool call to one of `tools`, at most `max_calls` of them."""

    tools: list[Tool]
    max_calls: int


def plan(request: GenerationRequest) -> ToolPlan | None:
    """Whether this generation calls tools (the rule in the module docstring), and which."""
    choice = request.tool_choice
    if not request.tools or choice == "none":
        return None
    if choice == "auto" and request.messages and request.messages[-1].role == "tool":
        return None
    tools = request.tools
    if isinstance(choice, NamedToolChoice):
        tools = [tool for tool in tools if tool.function.name == choice.function.name]
    return ToolPlan(tools, MAX_PARALLEL_CALLS if request.parallel_tool_calls else 1)


def grammar(tool_plan: ToolPlan) -> str:
    """The calls' GBNF grammar. llama-cpp-python's converter lets a string hold control characters, which
    JSON forbids (a small model writes raw newlines there): its `char` rule is replaced by llama.cpp's."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    text: str = json_schema_to_gbnf(json.dumps(grammar_schema(tool_plan)))
    return text.replace(r'char ::= [^"\\] |', r'char ::= [^"\\\x7F\x00-\x1F] |')


def grammar_schema(tool_plan: ToolPlan) -> dict[str, Any]:
    """The JSON schema of the calls, for the grammar: each tool's `$defs` moved to the top, renamed."""
    definitions: dict[str, Any] = {}
    calls = []
    for index, tool in enumerate(tool_plan.tools):
        parameters = _bounded(_rebased(tool.function.parameters, f"t{index}_"))
        for name, definition in (parameters.pop("$defs", None) or {}).items():
            definitions[name] = definition
        calls.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool.function.name}, "arguments": parameters},
                "required": ["name", "arguments"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = {
        "type": "array",
        "items": {"anyOf": calls} if len(calls) > 1 else calls[0],
        "minItems": 1,
        "maxItems": tool_plan.max_calls,
    }
    if definitions:
        schema["$defs"] = definitions
    return schema


def _rebased(schema: Any, prefix: str) -> Any:
    """The schema with its `$defs` (and `definitions`) renamed under `prefix`, references to match."""
    if isinstance(schema, list):
        return [_rebased(item, prefix) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in ("$defs", "definitions") and isinstance(value, dict):
            merged = out.setdefault("$defs", {})
            merged.update({prefix + name: _rebased(item, prefix) for name, item in value.items()})
        elif key == "$ref" and isinstance(value, str):
            for root in ("#/$defs/", "#/definitions/"):
                if value.startswith(root):
                    value = "#/$defs/" + prefix + value[len(root) :]
            out[key] = value
        elif key in ("const", "enum", "default", "examples"):
            out[key] = value
        else:
            out[key] = _rebased(value, prefix)
    return out


def _bounded(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_bounded(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {
        key: value if key in ("const", "enum", "default", "examples") else _bounded(value)
        for key, value in schema.items()
    }
    if out.get("type") == "string" and "maxLength" not in out and "enum" not in out and "pattern" not in out:
        out["maxLength"] = max(GRAMMAR_MAX_STRING, int(out.get("minLength", 0)))
    return out


def parse_calls(text: str) -> list[ToolCall]:
    """The calls in the model's output, each once (a small model repeats itself)."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UpstreamError(
            f"The model's tool call is not complete JSON ({exc.msg}); it may have hit max_tokens.",
            code="invalid_model_output",
        ) from exc
    calls: list[ToolCall] = []
    seen: set[str] = set()
    for item in raw:
        arguments = json.dumps(item["arguments"], ensure_ascii=False)
        if (key := f"{item['name']}\n{arguments}") not in seen:
            seen.add(key)
            calls.append(
                ToolCall(id=call_id(), function=FunctionCall(name=item["name"], arguments=arguments))
            )
    return calls


def template_messages(request: GenerationRequest, template_knows_tools: bool) -> list[dict[str, Any]]:
    """The conversation as the chat template's messages (the module docstring says how)."""
    if template_knows_tools:
        return [_native(m) for m in request.messages]
    names = {call.id: call.function.name for m in request.messages for call in m.tool_calls or []}
    messages = [_rendered(m, names) for m in request.messages]
    if request.tools and request.tool_choice != "none":
        described = "\n".join(_describe(tool) for tool in request.tools)
        instruction = f"You can call these tools:\n{described}\n{_CALL_FORMAT}"
        if messages and messages[0]["role"] == "system":
            messages[0] = {"role": "system", "content": f"{messages[0]['content']}\n\n{instruction}"}
        else:
            messages.insert(0, {"role": "system", "content": instruction})
    return messages


def template_tools(request: GenerationRequest) -> list[dict[str, Any]] | None:
    if not request.tools or request.tool_choice == "none":
        return None
    return [tool.model_dump(exclude_none=True) for tool in request.tools]


def _role(message: ChatMessage) -> str:
    return "system" if message.role == "developer" else message.role


def _native(message: ChatMessage) -> dict[str, Any]:
    rendered: dict[str, Any] = {"role": _role(message), "content": message.text()}
    if message.tool_calls:
        # Templates written for transformers read arguments as a mapping.
        rendered["tool_calls"] = [
            {
                "type": "function",
                "id": call.id,
                "function": {"name": call.function.name, "arguments": _loaded(call)},
            }
            for call in message.tool_calls
        ]
    if message.tool_call_id:
        rendered["tool_call_id"] = message.tool_call_id
    return rendered


def _rendered(message: ChatMessage, names: dict[str, str]) -> dict[str, Any]:
    if message.role == "tool":
        name = names.get(message.tool_call_id or "", "the tool")
        return {"role": "user", "content": f"Result of {name}: {message.text()}"}
    content = message.text()
    if message.tool_calls:
        calls = [{"name": call.function.name, "arguments": _loaded(call)} for call in message.tool_calls]
        content = "\n".join(part for part in (content, json.dumps(calls)) if part)
    return {"role": _role(message), "content": content}


def _loaded(call: ToolCall) -> Any:
    try:
        return json.loads(call.function.arguments or "{}")
    except json.JSONDecodeError:
        return call.function.arguments


def _describe(tool: Tool) -> str:
    function = tool.function
    summary = f" ({function.description})" if function.description else ""
    return f"- {function.name}{summary}; arguments (JSON schema): {json.dumps(function.parameters)}"
