"""Embeddings Keel makes for a tenant (its documents at ingestion, its queries at search), metered like
the API's calls: each call that reaches the model is charged to the tenant's tokens-per-minute limit and
written to the usage ledger under its feature ("ingestion", "search").

The runtime hands these to `knowledge`, which sees only `embed(tenant, texts)` and never the gateway.
The limit is charged before the call with an estimate (about four characters a token), since a remote
model's tokens are known only from its answer; the ledger records the tokens the model reported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt

from keel.errors import KeelError, RateLimitError
from keel.gateway.ledger import CallRecord, UsageLedger
from keel.gateway.limits import RateLimiter
from keel.gateway.providers.embedding import EmbeddingModel
from keel.logs import get_logger

log = get_logger(__name__)
Vectors = npt.NDArray[np.float32]
# A background job waits this long at most for its tenant's window before it fails the batch.
MAX_LIMIT_WAIT_S = 300.0


def estimate_tokens(texts: list[str]) -> int:
    """About four characters a token, and the special tokens around each text."""
    return sum(len(text) // 4 + 2 for text in texts)


class MeteredEmbeddings:
    """`on_limit`: "refuse" answers a request with the 429 (search); "wait" sleeps out the tenant's
    window (ingestion runs as a background job, which is better late than failed)."""

    def __init__(
        self,
        model: EmbeddingModel,
        alias: str,
        limiter: RateLimiter,
        ledger: UsageLedger,
        *,
        feature: str,
        on_limit: Literal["refuse", "wait"],
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._model = model
        self._alias = alias
        self._limiter = limiter
        self._ledger = ledger
        self._feature = feature
        self._on_limit = on_limit
        self._sleep = sleep

    @property
    def model_id(self) -> str:
        return self._model.model_id

    @property
    def dimensions(self) -> int:
        return self._model.dimensions

    def embed(self, tenant: str, texts: list[str]) -> Vectors:
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        self._charge(tenant, texts)
        started = time.monotonic()
        try:
            embedded = self._model.embed_with_usage(texts)
        except KeelError as exc:
            self._ledger.write_safely(self._record(tenant, started, 0, exc.code))
            raise
        self._ledger.write_safely(self._record(tenant, started, embedded.tokens))
        return embedded.vectors

    async def aembed(self, tenant: str, texts: list[str]) -> Vectors:
        if not texts:
            return np.empty((0, self.dimensions), dtype=np.float32)
        # The limiter and the ledger are synchronous (Redis, the database): off the event loop.
        await asyncio.to_thread(self._charge, tenant, texts)
        started = time.monotonic()
        try:
            embedded = await self._model.aembed_with_usage(texts)
        except KeelError as exc:
            failed = self._record(tenant, started, 0, exc.code)
            await asyncio.to_thread(self._ledger.write_safely, failed)
            raise
        await asyncio.to_thread(self._ledger.write_safely, self._record(tenant, started, embedded.tokens))
        return embedded.vectors

    def _charge(self, tenant: str, texts: list[str]) -> None:
        waited = 0.0
        while True:
            try:
                self._limiter.acquire_tokens(tenant, estimate_tokens(texts))
                return
            except RateLimitError as exc:
                wait = exc.retry_after or 1.0
                if self._on_limit == "refuse" or waited + wait > MAX_LIMIT_WAIT_S:
                    raise
                log.info("embedding_waits_for_limit", tenant=tenant, feature=self._feature, wait_s=wait)
                self._sleep(wait)
                waited += wait

    def _record(self, tenant: str, started: float, tokens: int, outcome: str = "ok") -> CallRecord:
        return CallRecord(
            tenant=tenant,
            key_id=self._feature,
            alias=self._alias,
            deployment=self._model.model_id,
            prompt_tokens=tokens,
            latency_ms=round((time.monotonic() - started) * 1000),
            outcome=outcome,
            feature=self._feature,
        )
