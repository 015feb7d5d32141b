"""The response cache: an exact hit, then a semantic one, answers without a model call; a miss is stored
once the answer ended, unless it or its prompt holds personal data (docs/guardrails.md)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import numpy.typing as npt

from keel.gateway.cache import CachedAnswer, CacheKeys, ResponseCache, cache_keys
from keel.gateway.model import Answer, ChatCall, ChatModel, answer_of
from keel.gateway.providers.base import EmbeddingProvider, Generation, StreamEnd, StreamEvent, TextDelta
from keel.guard.inbound import InboundGuard


class Cached:
    def __init__(
        self,
        inner: ChatModel,
        cache: ResponseCache,
        embedder: Callable[[], EmbeddingProvider | None],
        guard: Callable[[], InboundGuard | None],
    ) -> None:
        self.inner = inner
        self.cache = cache
        self._embedder = embedder
        self._guard = guard

    async def open(self, call: ChatCall) -> Answer:
        settings = self.cache.settings
        # Answers are cached as text: a request offering tools is never served or stored.
        if not (call.request.cache and not call.request.tools and (settings.exact or settings.semantic)):
            return await self.inner.open(call)
        keys = cache_keys(call.caller.tenant, call.request)
        vector = await self._vector(keys)
        found = (
            await asyncio.to_thread(self._lookup, keys, vector)
            if self.cache.blocking
            else self._lookup(keys, vector)
        )
        if found is not None:
            call.record.cache, hit = found
            call.record.deployment = hit.deployment
            return answer_of(Generation(hit.text, hit.finish_reason, hit.usage))
        answer = await self.inner.open(call)
        return Answer(self._stored(answer, call, keys, vector), inner=answer)

    async def _vector(self, keys: CacheKeys) -> npt.NDArray[np.float32] | None:
        if not (self.cache.settings.semantic and keys.last_user_message):
            return None
        embedder = self._embedder()
        return None if embedder is None else (await embedder.aembed([keys.last_user_message]))[0]

    def _lookup(
        self, keys: CacheKeys, vector: npt.NDArray[np.float32] | None
    ) -> tuple[str, CachedAnswer] | None:
        if self.cache.settings.exact and (answer := self.cache.get_exact(keys)) is not None:
            return "exact", answer
        if vector is not None and (found := self.cache.get_semantic(keys, vector)) is not None:
            return "semantic", found[0]
        return None

    async def _stored(
        self,
        events: AsyncIterator[StreamEvent],
        call: ChatCall,
        keys: CacheKeys,
        vector: npt.NDArray[np.float32] | None,
    ) -> AsyncIterator[StreamEvent]:
        pieces: list[str] = []
        async for event in events:
            if isinstance(event, TextDelta):
                pieces.append(event.text)
            elif isinstance(event, StreamEnd):
                text = "".join(pieces)
                if await self._cacheable(call, text):
                    cached = CachedAnswer(text, event.finish_reason, event.usage, call.record.deployment)
                    if self.cache.blocking:
                        await asyncio.to_thread(self.cache.put, keys, cached, vector)
                    else:
                        self.cache.put(keys, cached, vector)
            yield event

    async def _cacheable(self, call: ChatCall, answer: str) -> bool:
        """An answer is cached only when neither it nor its prompt holds personal data, as the guard's
        own detector finds it (off the event loop)."""
        guard = self._guard()
        if guard is None:
            return True
        texts = [*(m.text() for m in call.request.messages), answer]
        return not await asyncio.to_thread(lambda: any(guard.pii.detect(text) for text in texts))
