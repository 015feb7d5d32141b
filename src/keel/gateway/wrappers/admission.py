"""Admission: the request's shape and context window, then the caller's rate limits — the cheap
refusals, before any cache, guard or model sees the request."""

from __future__ import annotations

import asyncio

from keel.gateway.context_window import check_context_window
from keel.gateway.dispatch import Dispatcher
from keel.gateway.limits import RateLimiter
from keel.gateway.model import Answer, ChatCall, ChatModel
from keel.gateway.router import estimate_tokens
from keel.gateway.unhonoured import refuse_unhonoured

# A prompt this short is counted on the event loop (well under a millisecond); a longer one on a thread.
_INLINE_COUNT_CHARS = 4096


class Checked:
    def __init__(self, inner: ChatModel, dispatcher: Dispatcher) -> None:
        self.inner = inner
        self._dispatcher = dispatcher

    async def open(self, call: ChatCall) -> Answer:
        request = call.request
        refuse_unhonoured(request)
        self._dispatcher.alias(request.model)
        chain = self._dispatcher.chain(request.model, call.generation)
        if sum(len(m.text()) for m in request.messages) < _INLINE_COUNT_CHARS and all(
            d.provider.is_ready for d in chain
        ):
            check_context_window(request.model, chain, request.messages)
        else:  # tokenizing up to a context window's worth (or a model still loading): off the loop
            await asyncio.to_thread(check_context_window, request.model, chain, request.messages)
        return await self.inner.open(call)


class RateLimited:
    def __init__(self, inner: ChatModel, limiter: RateLimiter, default_completion_tokens: int) -> None:
        self.inner = inner
        self._limiter = limiter
        self._default_completion_tokens = default_completion_tokens

    async def open(self, call: ChatCall) -> Answer:
        request = call.request
        tokens = estimate_tokens(request.messages, request.tools or ()) + (
            request.token_limit() or self._default_completion_tokens
        )
        caller = call.caller
        if self._limiter.blocking:
            await asyncio.to_thread(self._limiter.acquire, caller.key_id, caller.tenant, tokens)
        else:
            self._limiter.acquire(caller.key_id, caller.tenant, tokens)
        return await self.inner.open(call)
