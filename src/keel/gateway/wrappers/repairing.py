"""Structured output: an answer that breaks the requested JSON mode or schema is repaired once."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator

from keel.errors import KeelError
from keel.gateway.model import Answer, ChatCall, ChatModel, answer_of, collect
from keel.gateway.protocol import Usage
from keel.gateway.providers.base import Generation, GenerationRequest, StreamEnd, StreamEvent, TextDelta
from keel.gateway.structured import check_structured_output, repair_request, wants_json


class Repaired:
    def __init__(self, inner: ChatModel) -> None:
        self.inner = inner

    async def open(self, call: ChatCall) -> Answer:
        if not wants_json(call.generation):
            return await self.inner.open(call)
        if call.stream:
            # Sent text cannot be taken back: a stream is checked at its end, not repaired.
            answer = await self.inner.open(call)
            return Answer(_checked(answer, call.generation), inner=answer)
        generation = await collect(await self.inner.open(call))
        if generation.finish_reason == "length":
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
            generation = Generation(repaired.text, repaired.finish_reason, usage)
            check_structured_output(generation.text, call.generation)
        return answer_of(generation)


def _asking(call: ChatCall, request: GenerationRequest) -> ChatCall:
    """The same call (and record) asking the model something else."""
    other = copy.copy(call)
    other.__dict__["generation"] = request
    return other


async def _checked(
    events: AsyncIterator[StreamEvent], request: GenerationRequest
) -> AsyncIterator[StreamEvent]:
    pieces: list[str] = []
    async for event in events:
        if isinstance(event, TextDelta):
            pieces.append(event.text)
        elif isinstance(event, StreamEnd) and event.finish_reason != "length":
            check_structured_output("".join(pieces), request)
        yield event
