"""Embedding doubles for the copilot's steps: deterministic vectors with a known geometry."""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

from keel.copilot.text import content_words

_DIMENSIONS = 1024


class WordEmbedder:
    """A bag of the text's content words, hashed: cosine is word overlap, so a test knows which
    sentence is closest to a question without a model."""

    is_ready = True
    dimensions = _DIMENSIONS
    model_id = "words"

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        rows = np.zeros((len(texts), _DIMENSIONS), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in content_words(text):
                rows[i, int(hashlib.sha1(word.encode()).hexdigest(), 16) % _DIMENSIONS] += 1.0
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms == 0, 1.0, norms)

    async def aembed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return self.embed(texts)

    async def acount_tokens(self, texts: list[str]) -> int:
        return sum(len(t.split()) for t in texts)

    async def acount_input_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]


class DistinctEmbedder(WordEmbedder):
    """Every distinct text its own direction: no semantic support, only the lexical and the binding
    tests of the grounding check decide."""

    model_id = "distinct"

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        rows = np.zeros((len(texts), _DIMENSIONS), dtype=np.float32)
        for i, text in enumerate(texts):
            rows[i, self._ids.setdefault(text, len(self._ids)) % _DIMENSIONS] = 1.0
        return rows
