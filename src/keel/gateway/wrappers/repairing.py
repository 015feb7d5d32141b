"""The answer checked against the request: its tool calls must honour the tools offered (`tools.py`), and
an answer that breaks the requested JSON mode or schema is repaired once."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator

from keel.errors import KeelError
from keel.gateway.model import Answer, ChatCall, ChatModel, answer_of, collect
from keel.gateway.protocol import FinishReason, ToolCall, Usage
from keel.gateway.providers.base import (
    Generation,
    GenerationRequest,
    StreamEvent,
    TextDelta,
    ToolCallPart,
)
from keel.gateway.structured import check_structured_output, repair_request, wants_json
from keel.gateway.tools import assemble, check_tool_calls


class Repaired:
    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner

    async def open(self, call: ChatCall) -> Answer:
        if not (wants_json(call.generation) or call.generation.tools):
            return await self.inner.open(call)
        if call.stream:
            # Sent text cannot be taken back: a stream is checked at its end, not repaired.
            answer = await self.inner.open(call)
            return Answer(_checked(answer, call.generation), inner=answer)
        generation = await collect(await self.inner.open(call))
        check_tool_calls(generation.tool_calls, call.generation)
        if not _json_due(call.generation, generation.finish_reason):
            return answer_of(generation)
        try:
            check_structured_output(generation.text, call.generation)
        except KeelError as problem:
            # One repair: the model sees its answer and what was wrong with it.
            again = _asking(call, repair_request(call.generation, generation.text, problem.message))
            repaired = await collect(await self.inner.open(again))
            usage = Usage.of(
                generation.usage.prompt_tokens + repaired.usage.prompt_tokens,
                generation.usage.completion_tokens + repaired.usage.completion_tokens,
            )
            generation = Generation(repaired.text, repaired.finish_reason, usage, repaired.tool_calls)
            _check(generation.text, generation.tool_calls, generation.finish_reason, call.generation)
        return answer_of(generation)


def _json_due(request: GenerationRequest, finish_reason: FinishReason) -> bool:
    """Whether the answer's text must be the requested JSON: not when it was cut short, nor when the
    model called tools instead of answering."""
    return wants_json(request) and finish_reason not in ("length", "tool_calls")


def _check(text: str, calls: list[ToolCall], finish_reason: FinishReason, request: GenerationRequest) -> None:
    check_tool_calls(calls, request)
    if _json_due(request, finish_reason):
        check_structured_output(text, request)


def _asking(call: ChatCall, request: GenerationRequest) -> ChatCall:
    """The same call (and record) asking the model something else."""
    other = copy.copy(call)
    other.__dict__["generation"] = request
    return other


async def _checked(
    events: AsyncIterator[StreamEvent], request: GenerationRequest
) -> AsyncIterator[StreamEvent]:
    pieces: list[str] = []
    parts: list[ToolCallPart] = []
    async for event in events:
        if isinstance(event, TextDelta):
            pieces.append(event.text)
        elif isinstance(event, ToolCallPart):
            parts.append(event)
        else:
            _check("".join(pieces), assemble(parts), event.finish_reason, request)
        yield event
