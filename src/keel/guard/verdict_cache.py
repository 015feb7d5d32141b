"""Verdicts remembered by content. A knowledge base's chunks come back query after query, and a chunk's
verdict depends only on its text and on the detector that judged it, so each chunk is embedded and
scored once per detector state, not once per reply. Keys are digests: no text is kept."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Hashable
from typing import Generic, TypeVar

from cachetools import LRUCache

V = TypeVar("V")


class VerdictCache(Generic[V]):
    """A bounded, thread-safe map from (detector state, text digest) to a verdict."""

    def __init__(self, size: int) -> None:
        self._verdicts: LRUCache[tuple[Hashable, bytes], V] = LRUCache(maxsize=max(1, size))
        self._lock = threading.Lock()
        self.enabled = size > 0

    @staticmethod
    def _digest(text: str) -> bytes:
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()

    def lookup(self, state: Hashable, texts: list[str]) -> tuple[list[V | None], list[int]]:
        """The verdicts known for `texts` (None where unknown) and the indices still to be judged."""
        if not self.enabled:
            return [None] * len(texts), list(range(len(texts)))
        with self._lock:
            known = [self._verdicts.get((state, self._digest(text))) for text in texts]
        return known, [i for i, verdict in enumerate(known) if verdict is None]

    def remember(self, state: Hashable, texts: list[str], verdicts: list[V]) -> None:
        if not self.enabled:
            return
        with self._lock:
            for text, verdict in zip(texts, verdicts, strict=True):
                self._verdicts[(state, self._digest(text))] = verdict

    def merged(self, known: list[V | None], missing: list[int], judged: list[V]) -> list[V]:
        """`known` with the newly judged verdicts put in place of the missing ones."""
        filled = list(known)
        for index, verdict in zip(missing, judged, strict=True):
            filled[index] = verdict
        return [verdict for verdict in filled if verdict is not None]
