"""Test doubles for the gateway's unit tests: scripted models (the outside of the unit) and a builder."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.config import AliasSettings, DeploymentSettings, GatewaySettings
from keel.gateway.breaker import CircuitBreaker
from keel.gateway.budgets import BudgetLedger
from keel.gateway.cache import MemoryResponseCache
from keel.gateway.deployments import Deployment
from keel.gateway.dispatch import Dispatcher
from keel.gateway.ledger import UsageLedger
from keel.gateway.limits import RateLimiter
from keel.gateway.protocol import ChatCompletionRequest, Usage
from keel.gateway.providers.base import Generation, GenerationRequest, StreamEnd, StreamEvent, TextDelta
from keel.gateway.service import Gateway
from keel.store.engine import Database

Outcome = str | Exception


@dataclass
class ScriptedModel:
    """A chat model answering from a script: each call takes the next outcome (text or exception);
    the last one repeats."""

    script: list[Outcome]
    usage: Usage = field(default_factory=lambda: Usage.of(7, 3))
    delay_s: float = 0.0
    requests: list[GenerationRequest] = field(default_factory=list)
    is_ready: bool = True

    def _next(self) -> Outcome:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]

    async def complete(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        outcome = self._next()
        if isinstance(outcome, Exception):
            raise outcome
        return Generation(outcome, "stop", self.usage)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        outcome = self._next()
        if isinstance(outcome, Exception):
            raise outcome
        for piece in outcome.split(" "):
            yield TextDelta(piece + " ")
        yield StreamEnd("stop", self.usage)


class FixedEmbedder:
    is_ready = True
    dimensions = 3
    model_id = "fixed"

    def __init__(self, vectors: dict[str, list[float]] | None = None) -> None:
        self.vectors = vectors or {}

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        rows = [self.vectors.get(t, [1.0, 0.0, 0.0]) for t in texts]
        array = np.array(rows, dtype=np.float32)
        return array / np.linalg.norm(array, axis=1, keepdims=True)

    async def aembed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return self.embed(texts)

    async def acount_tokens(self, texts: list[str]) -> int:
        return 2 * len(texts)

    async def acount_input_tokens(self, texts: list[str]) -> list[int]:
        return [2] * len(texts)


def make_gateway(
    tmp_path: Path,
    models: dict[str, tuple[Any, DeploymentSettings]],
    aliases: dict[str, AliasSettings] | None = None,
    settings: GatewaySettings | None = None,
    embedder: FixedEmbedder | None = None,
    clock: Callable[[], float] | None = None,
) -> Gateway:
    settings = settings or GatewaySettings()
    database = Database(f"sqlite:///{tmp_path / 'gateway.db'}")
    database.migrate()
    deployments = {
        name: Deployment(name, config, provider, CircuitBreaker(settings.breaker, *(clock,) if clock else ()))
        for name, (provider, config) in models.items()
    }
    aliases = aliases or {"m": AliasSettings(deployments=list(models))}
    return Gateway(
        settings,
        Dispatcher(aliases, deployments, settings.retry),
        {"e": embedder or FixedEmbedder()},
        RateLimiter(settings),
        BudgetLedger(database, settings),
        MemoryResponseCache(settings.cache),
        UsageLedger(database),
        default_completion_tokens=64,
    )


def chat_request(**extra: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], **extra}
    )


def local(**extra: Any) -> DeploymentSettings:
    return DeploymentSettings(provider="local", **extra)
