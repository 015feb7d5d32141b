"""Deployments: a provider with its settings, its circuit breaker and its measured latency."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

from keel.config import BreakerSettings, DeploymentSettings, Settings
from keel.errors import InvalidRequestError
from keel.gateway.breaker import CircuitBreaker
from keel.gateway.providers.base import ChatProvider
from keel.gateway.providers.chat_registry import chat_factories

# Weight of the newest sample in the moving average of latency.
_LATENCY_SMOOTHING = 0.3


@dataclass
class Deployment:
    name: str
    settings: DeploymentSettings
    provider: ChatProvider
    breaker: CircuitBreaker
    _latency_s: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def latency_s(self) -> float | None:
        return self._latency_s

    def record_latency(self, seconds: float) -> None:
        with self._lock:
            previous = self._latency_s
            self._latency_s = (
                seconds
                if previous is None
                else _LATENCY_SMOOTHING * seconds + (1 - _LATENCY_SMOOTHING) * previous
            )


def build_remote_provider(name: str, settings: DeploymentSettings) -> ChatProvider:
    api_key = os.environ.get(settings.api_key_env) if settings.api_key_env else None
    if settings.api_key_env and not api_key:
        raise InvalidRequestError(
            f"Deployment '{name}': environment variable {settings.api_key_env} is not set."
        )
    factories = chat_factories()
    factory = factories.get(settings.provider)
    if factory is None:
        raise InvalidRequestError(
            f"Deployment '{name}': unknown provider '{settings.provider}'; installed: "
            f"{', '.join(['local', *sorted(factories)])}."
        )
    return factory(name, settings, api_key)


def default_local_deployments(settings: Settings) -> dict[str, DeploymentSettings]:
    return {"local": DeploymentSettings(provider="local", context_window=settings.chat.n_ctx, timeout_s=300)}


def build_deployments(
    configured: dict[str, DeploymentSettings],
    local_provider: ChatProvider,
    breaker: BreakerSettings,
) -> dict[str, Deployment]:
    return {
        name: Deployment(
            name=name,
            settings=settings,
            provider=local_provider
            if settings.provider == "local"
            else build_remote_provider(name, settings),
            breaker=CircuitBreaker(breaker),
        )
        for name, settings in configured.items()
    }
