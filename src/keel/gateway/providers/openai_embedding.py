"""An embedding provider for any OpenAI-compatible `/embeddings` endpoint (vLLM, TEI, Ollama, llama.cpp
server, OpenAI, another Keel) over pooled httpx connections.

Texts go in batches of `batch_size`; each batch is retried on retryable failures (429, 5xx, timeouts,
dropped connections) with the gateway's own policy (`retry.py`: backoff with full jitter, Retry-After
honoured). Vectors are returned in input order and normalised to unit length, as the contract asks.
Tokens are what the server reports in `usage`: its tokenizer is not Keel's to run.
"""

from __future__ import annotations

import os
import threading
from functools import partial
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ValidationError
from tenacity import Retrying, retry_if_exception, stop_after_attempt

from keel.config import LocalEmbeddingSettings, RetrySettings
from keel.errors import InvalidRequestError
from keel.gateway.providers.base import ProviderError
from keel.gateway.providers.embedding import Embedded
from keel.gateway.providers.openai_compat import (
    UpstreamHttp,
    error_from_response,
    invalid_answer,
    transport_errors,
)
from keel.gateway.retry import backoff, call_with_retries, is_retryable

# UTF-8 bytes bound every tokenizer's count (byte-level BPE, WordPiece), plus the special tokens.
_SPECIAL_TOKENS = 2


class _Row(BaseModel):
    index: int
    embedding: list[float]


class _Usage(BaseModel):
    prompt_tokens: int = 0


class _Answer(BaseModel):
    data: list[_Row]
    usage: _Usage = _Usage()


class OpenAICompatibleEmbeddingProvider:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        dimensions: int | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        batch_size: int = 64,
        retry: RetrySettings | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sync_transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.model = model
        self.batch_size = batch_size
        self._retry = retry or RetrySettings()
        self._dimensions = dimensions
        self._upstream = f"The embedding upstream {model!r} at {base_url}"
        options: dict[str, Any] = {
            "base_url": base_url.rstrip("/"),
            "headers": {"Authorization": f"Bearer {api_key}"} if api_key else {},
            "timeout": timeout_s,
        }
        self._http = UpstreamHttp(lambda: httpx.AsyncClient(transport=transport, **options), base_url)
        # One pooled client for the worker threads that embed synchronously (ingestion, classifiers).
        self._client = httpx.Client(transport=sync_transport, **options)
        self._dimensions_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: LocalEmbeddingSettings) -> OpenAICompatibleEmbeddingProvider:
        if not settings.base_url or not settings.model:
            raise InvalidRequestError(
                "The 'openai' embedding provider needs embedding.base_url and embedding.model."
            )
        return cls(
            settings.base_url,
            settings.model,
            dimensions=settings.dimensions,
            api_key=os.environ.get(settings.api_key_env) if settings.api_key_env else None,
            timeout_s=settings.timeout_s,
            batch_size=settings.batch_size,
            retry=settings.retry,
        )

    @property
    def is_ready(self) -> bool:
        return True  # a remote server: whether it answers shows on the first call

    @property
    def model_id(self) -> str:
        return f"openai-compatible:{self.model}"

    @property
    def dimensions(self) -> int:
        return self.declared_dimensions()

    def declared_dimensions(self) -> int:
        """The configured size; without one, the server is asked once (one short text)."""
        with self._dimensions_lock:
            if self._dimensions is None:
                self._dimensions = int(self._post_batch(["dimensions"]).vectors.shape[1])
            return self._dimensions

    def warm_up(self) -> None:
        pass  # nothing to load here; the server loads its model

    def close(self) -> None:
        self._client.close()

    async def aclose(self) -> None:
        await self._http.aclose()
        self._client.close()

    # -- the calls ---------------------------------------------------------------------------------

    def embed_with_usage(self, texts: list[str]) -> Embedded:
        retrying = Retrying(
            stop=stop_after_attempt(self._retry.attempts),
            wait=backoff(self._retry),
            retry=retry_if_exception(is_retryable),
            reraise=True,
        )
        parts = [retrying(self._post_batch, batch) for batch in self._batches(texts)]
        return self._joined(parts)

    async def aembed_with_usage(self, texts: list[str]) -> Embedded:
        parts = [
            await call_with_retries(partial(self._apost_batch, batch), self._retry)
            for batch in self._batches(texts)
        ]
        return self._joined(parts)

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return self.embed_with_usage(texts).vectors

    async def aembed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return (await self.aembed_with_usage(texts)).vectors

    async def acount_tokens(self, texts: list[str]) -> int:
        """Only the server can count its tokens: this embeds the texts and reads its `usage`."""
        return (await self.aembed_with_usage(texts)).tokens

    async def acount_input_tokens(self, texts: list[str]) -> list[int]:
        """An upper bound per text (UTF-8 bytes and special tokens): the server reports totals only."""
        return [len(text.encode()) + _SPECIAL_TOKENS for text in texts]

    def _batches(self, texts: list[str]) -> list[list[str]]:
        return [texts[start : start + self.batch_size] for start in range(0, len(texts), self.batch_size)]

    def _body(self, batch: list[str]) -> dict[str, Any]:
        return {"model": self.model, "input": batch, "encoding_format": "float"}

    def _post_batch(self, batch: list[str]) -> Embedded:
        with transport_errors(self._upstream):
            response = self._client.post("/embeddings", json=self._body(batch))
        return self._parsed(response, len(batch))

    async def _apost_batch(self, batch: list[str]) -> Embedded:
        with transport_errors(self._upstream):
            response = await self._http.post_json("/embeddings", self._body(batch))
        return self._parsed(response, len(batch))

    def _parsed(self, response: httpx.Response, count: int) -> Embedded:
        if not response.is_success:
            raise error_from_response(response, self._upstream)
        try:
            answer = _Answer.model_validate_json(response.content)
        except ValidationError as exc:
            raise invalid_answer(self._upstream, "embeddings", exc) from exc
        rows = sorted(answer.data, key=lambda row: row.index)
        if [row.index for row in rows] != list(range(count)) or len({len(r.embedding) for r in rows}) > 1:
            raise ProviderError(
                f"{self._upstream} sent {len(rows)} vectors of mixed sizes or indexes for {count} texts.",
                retryable=False,
            )
        vectors = np.asarray([row.embedding for row in rows], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise ProviderError(f"{self._upstream} sent a zero or non-finite vector.", retryable=False)
        return Embedded((vectors / norms).astype(np.float32), answer.usage.prompt_tokens)

    def _joined(self, parts: list[Embedded]) -> Embedded:
        if not parts:
            return Embedded(np.empty((0, self.declared_dimensions()), dtype=np.float32), 0)
        return Embedded(np.concatenate([p.vectors for p in parts]), sum(p.tokens for p in parts))
