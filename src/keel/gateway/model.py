"""The one chat-model interface every gateway concern wraps, and the call it is given.

A `ChatModel` opens an answer: `open(call)` returns once the answer has begun (its first event arrived)
or raises, so a refusal before that point still gets its own HTTP status. The answer is a stream of
`TextDelta`s and `ToolCallPart`s ending with one `StreamEnd`; a non-streaming call is that stream
collected. Wrappers
(`gateway/wrappers/`) add one concern each around an inner `ChatModel` and fill in the call's one
`CallRecord`, which feeds the response headers, the trace and the usage ledger.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Protocol

from keel.gateway.ledger import CallRecord, PromptUse
from keel.gateway.protocol import ChatCompletionRequest, Usage
from keel.gateway.providers.base import (
    Generation,
    GenerationRequest,
    StreamEnd,
    StreamEvent,
    TextDelta,
)
from keel.gateway.structured import generation_request
from keel.gateway.tools import collected, tool_call_parts


@dataclass(frozen=True)
class CallPolicy:
    """Which of the gateway's optional steps apply to a caller's calls, declared by the caller."""

    # Screen the input for prompt injection. A part of Keel that screens its own users' messages
    # (the copilot, which escalates instead of refusing) or writes the prompt itself turns it off.
    screen_input: bool = True


# Calls from outside Keel (the OpenAI-compatible API, the CLI): every step applies.
EXTERNAL = CallPolicy()
# Calls whose prompt Keel wrote or already screened.
INTERNAL = CallPolicy(screen_input=False)


@dataclass(frozen=True)
class Caller:
    tenant: str
    key_id: str
    # Which part of Keel makes the call, for usage reports only.
    feature: str = "api"
    # The registry prompt the call was rendered from; recorded on the trace and usage row only.
    prompt: PromptUse | None = None
    policy: CallPolicy = EXTERNAL


@dataclass
class ChatCall:
    """One chat call on its way through the wrappers."""

    request: ChatCompletionRequest
    caller: Caller
    stream: bool
    record: CallRecord = field(init=False)

    def __post_init__(self) -> None:
        self.record = CallRecord(
            tenant=self.caller.tenant,
            key_id=self.caller.key_id,
            alias=self.request.model,
            stream=self.stream,
            prompt_version=self.request.prompt_version,
            feature=self.caller.feature,
        )
        self.record.mark_prompt(self.caller.prompt)

    @cached_property
    def generation(self) -> GenerationRequest:
        """What the providers are asked for (checks the response format's schema on first use)."""
        return generation_request(self.request)


Finish = Callable[[BaseException | None], Awaitable[None]]


class Answer:
    """An answer that has begun: iterate its events; whoever opened it iterates it to the end or closes
    it. `finish` runs exactly once however the answer ends (error, end, or closed before it was read),
    so a wrapper's settlement (a budget, a ledger row) is never skipped."""

    def __init__(
        self, events: AsyncIterator[StreamEvent], inner: Answer | None = None, finish: Finish | None = None
    ) -> None:
        self._events = events
        self._inner = inner
        self._finish = finish

    def __aiter__(self) -> Answer:
        return self

    async def __anext__(self) -> StreamEvent:
        try:
            return await anext(self._events)
        except StopAsyncIteration:
            await self._end(None)
            raise
        except BaseException as exc:
            # A wrapper's own refusal (a stream's end that breaks its schema) leaves the answers inside
            # it unfinished: they are closed first, so what they settle (the cost) is known after.
            await self._close(exc)
            raise

    async def aclose(self) -> None:
        aclose = getattr(self._events, "aclose", None)
        try:
            if aclose is not None:
                await aclose()
        finally:
            await self._close(None)

    async def _close(self, error: BaseException | None) -> None:
        try:
            if self._inner is not None:
                await self._inner.aclose()
        finally:
            await self._end(error)

    async def _end(self, error: BaseException | None) -> None:
        finish, self._finish = self._finish, None
        if finish is not None:
            await finish(error)


class ChatModel(Protocol):
    """A chat model, or a wrapper around one: `open` returns once the answer has begun."""

    async def open(self, call: ChatCall) -> Answer: ...


async def _events_of(generation: Generation) -> AsyncIterator[StreamEvent]:
    if generation.text:
        yield TextDelta(generation.text)
    for part in tool_call_parts(generation.tool_calls):
        yield part
    yield StreamEnd(generation.finish_reason, generation.usage)


def answer_of(generation: Generation) -> Answer:
    """A whole generation as an answer (a cache hit, a non-streamed provider call, a repair)."""
    return Answer(_events_of(generation))


async def prepend(first: StreamEvent, rest: AsyncIterator[StreamEvent]) -> AsyncIterator[StreamEvent]:
    yield first
    async for event in rest:
        yield event


async def collect(answer: Answer) -> Generation:
    """The non-streaming form of an answer."""
    async with contextlib.aclosing(answer):
        return await collected(answer)


def no_usage() -> Usage:
    return Usage.of(0, 0)
