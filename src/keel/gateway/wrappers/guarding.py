"""The input guard, off the critical path: the injection check runs while the model is asked.

Its verdict is awaited before the answer is handed on (no byte of it reaches the client before), and a
refusal cancels the model call. A cached answer never gets here: it was made for a request that passed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from keel.gateway.model import Answer, ChatCall, ChatModel
from keel.guard.inbound import InboundGuard


class Guarded:
    def __init__(self, inner: ChatModel, guard: Callable[[], InboundGuard | None]) -> None:
        self.inner = inner
        # Read per call: the guard can be replaced while the gateway runs.
        self._guard = guard

    async def open(self, call: ChatCall) -> Answer:
        guard = self._guard()
        if guard is None or not call.caller.policy.screen_input:
            return await self.inner.open(call)
        opening = asyncio.ensure_future(self.inner.open(call))
        try:
            await guard.aenforce_on_api(call.request.messages)
        except BaseException:
            await _cancel(opening)
            raise
        return await opening


async def _cancel(opening: asyncio.Future[Answer]) -> None:
    opening.cancel()
    try:
        answer = await opening
    except BaseException:  # cancelled, or it had failed anyway: the guard's refusal is what counts
        return
    with contextlib.suppress(Exception):
        await answer.aclose()  # it had opened before the verdict: its settlement still runs
