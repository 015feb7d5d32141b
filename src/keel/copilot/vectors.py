"""Sentence vectors for the copilot's steps, kept in a bounded in-process cache: composition and grounding
embed the same passage sentences for every question that retrieves them. An embedding provider itself,
so the grounding check takes it as it takes the model."""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict

import numpy as np
import numpy.typing as npt

from keel.gateway.providers.base import EmbeddingProvider


class SentenceVectors:
    def __init__(self, embedder: EmbeddingProvider, capacity: int = 20_000) -> None:
        self.embedder = embedder
        self._capacity = capacity
        self._cache: OrderedDict[str, npt.NDArray[np.float32]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def is_ready(self) -> bool:
        return self.embedder.is_ready

    @property
    def dimensions(self) -> int:
        return self.embedder.dimensions

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Unit-length vectors, one row per text; texts seen before are not embedded again."""
        with self._lock:
            known = {t: self._cache[t] for t in texts if t in self._cache}
            for text in known:
                self._cache.move_to_end(text)
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            fresh = self.embedder.embed(missing)
            known.update(zip(missing, fresh, strict=True))
            with self._lock:
                for text in missing:
                    self._cache[text] = known[text]
                while len(self._cache) > self._capacity:
                    self._cache.popitem(last=False)
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([known[t] for t in texts]).astype(np.float32, copy=False)

    async def aembed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return await asyncio.to_thread(self.embed, texts)

    async def acount_tokens(self, texts: list[str]) -> int:
        return await self.embedder.acount_tokens(texts)

    async def acount_input_tokens(self, texts: list[str]) -> list[int]:
        return await self.embedder.acount_input_tokens(texts)
