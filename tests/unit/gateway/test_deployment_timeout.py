"""A deployment's timeout, latency and breaker judge the upstream, not Keel's own work on the request."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

from keel.config import AliasSettings, DeploymentSettings, GatewaySettings
from keel.gateway.breaker import CircuitBreaker
from keel.gateway.deployments import Deployment
from keel.gateway.dispatch import Dispatcher, DispatchStats
from keel.gateway.protocol import ChatMessage
from keel.gateway.providers.base import GenerationRequest
from tests.unit.gateway.doubles import ScriptedModel


class _SlowPseudonymiser:
    """The guard's outbound step, slower than the deployment's whole timeout (a cold name model)."""

    settings = SimpleNamespace(pii_external="pseudonymise")

    def outbound(self, provider: str, request: GenerationRequest, *, reversible: bool = True) -> Any:
        time.sleep(0.3)
        return request, lambda text: text


def test_a_slow_pseudonymisation_is_not_an_upstream_timeout() -> None:
    settings = GatewaySettings()
    config = DeploymentSettings(provider="openai", base_url="http://upstream.invalid/v1", timeout_s=0.1)
    deployment = Deployment("remote", config, ScriptedModel(["ok"]), CircuitBreaker(settings.breaker))
    dispatcher = Dispatcher(
        {"m": AliasSettings(deployments=["remote"])},
        {"remote": deployment},
        settings.retry,
        guard=_SlowPseudonymiser(),  # type: ignore[arg-type]
    )
    request = GenerationRequest(messages=[ChatMessage(role="user", content="hi")])
    stats = DispatchStats()
    generation = asyncio.run(dispatcher.complete("m", request, stats))
    assert generation.text == "ok" and stats.retries == 0
    assert deployment.breaker.state == "closed"
