"""A fake inner model for the wrapper tests: answers from a script, records how it was used."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from keel.gateway.model import Answer, Caller, ChatCall
from keel.gateway.protocol import ChatCompletionRequest, Usage
from keel.gateway.providers.base import StreamEnd, StreamEvent, TextDelta

CALLER = Caller(tenant="acme", key_id="key_1")


@dataclass
class FakeModel:
    """Each call takes the next text of the script (the last repeats); `delay_s` holds the opening."""

    script: list[str] = field(default_factory=lambda: ["fine"])
    delay_s: float = 0.0
    usage: Usage = field(default_factory=lambda: Usage.of(5, 2))
    calls: list[ChatCall] = field(default_factory=list)
    cancelled: int = 0
    closed: int = 0

    async def open(self, call: ChatCall) -> Answer:
        self.calls.append(call)
        try:
            await asyncio.sleep(self.delay_s)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        text = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        return Answer(self._events(text), finish=self._finished)

    async def _events(self, text: str) -> AsyncIterator[StreamEvent]:
        for word in text.split(" "):
            yield TextDelta(word + " ")
        yield StreamEnd("stop", self.usage)

    async def _finished(self, _: BaseException | None) -> None:
        self.closed += 1


def call_of(text: str = "hi", stream: bool = False, caller: Caller = CALLER, **extra: Any) -> ChatCall:
    request = ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": text}], **extra}
    )
    return ChatCall(request, caller, stream=stream)
