"""Breakers, retries, fallbacks and routing, with scripted models standing in for the upstreams."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from tenacity import RetryCallState

from keel.config import AliasSettings, BreakerSettings, GatewaySettings, RetrySettings
from keel.errors import ServiceUnavailableError
from keel.gateway.breaker import BreakerState, CircuitBreaker
from keel.gateway.deployments import Deployment
from keel.gateway.protocol import ChatMessage
from keel.gateway.providers.base import ContextWindowExceeded, ProviderError
from keel.gateway.retry import backoff
from keel.gateway.router import order_deployments
from keel.gateway.service import Caller
from tests.unit.gateway.doubles import ScriptedModel, chat_request, local, make_gateway

CALLER = Caller(tenant="acme", key_id="key_1")
FAST_RETRY = RetrySettings(attempts=3, base_delay_s=0.0, max_delay_s=0.0)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def server_error() -> ProviderError:
    return ProviderError("upstream 500", retryable=True, status=500)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_probes_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(failures=3, window_s=10, cooldown_s=5), clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state == BreakerState.OPEN and not breaker.allow()
    clock.now = 5.1
    assert breaker.state == BreakerState.HALF_OPEN
    assert breaker.allow() and not breaker.allow(), "one probe at a time"
    breaker.record_failure()
    assert breaker.state == BreakerState.OPEN
    clock.now = 10.2
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == BreakerState.CLOSED and breaker.allow()


def test_breaker_counts_only_failures_inside_the_window() -> None:
    clock = Clock()
    breaker = CircuitBreaker(BreakerSettings(failures=3, window_s=10, cooldown_s=5), clock)
    for moment in (0.0, 6.0, 12.0, 18.0):
        clock.now = moment
        breaker.record_failure()
    assert breaker.state == BreakerState.CLOSED


def test_backoff_honours_retry_after_and_its_cap() -> None:
    wait = backoff(RetrySettings(base_delay_s=0.1, max_delay_s=0.5, max_retry_after_s=3))

    def state_after(error: Exception, attempt: int) -> RetryCallState:
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = attempt
        state.set_exception((type(error), error, None))
        return state

    assert wait(state_after(ProviderError("429", retryable=True, retry_after=2.0), 1)) >= 2.0
    assert wait(state_after(ProviderError("429", retryable=True, retry_after=60.0), 1)) == 3.0
    assert all(0 <= wait(state_after(server_error(), 5)) <= 0.5 for _ in range(50))


def test_retries_then_success(tmp_path: Path) -> None:
    model = ScriptedModel([server_error(), server_error(), "ok"])
    gateway = make_gateway(tmp_path, {"a": (model, local())}, settings=GatewaySettings(retry=FAST_RETRY))
    completion, info = run(gateway.chat(chat_request(), CALLER))
    assert completion.choices[0].message.content == "ok"
    assert (info.retries, info.deployment, info.fallback_used) == (2, "a", False)


def test_non_retryable_errors_are_not_retried(tmp_path: Path) -> None:
    model = ScriptedModel([ProviderError("bad request", retryable=False, status=400), "ok"])
    gateway = make_gateway(tmp_path, {"a": (model, local())}, settings=GatewaySettings(retry=FAST_RETRY))
    with pytest.raises(ProviderError, match="bad request"):
        run(gateway.chat(chat_request(), CALLER))
    assert len(model.requests) == 1


def test_fallback_to_the_next_deployment_and_alias(tmp_path: Path) -> None:
    broken, backup, other = (
        ScriptedModel([server_error()]),
        ScriptedModel(["from b"]),
        ScriptedModel(["from c"]),
    )
    aliases = {
        "m": AliasSettings(deployments=["a", "b"], strategy="lowest_cost", fallbacks=["n"]),
        "n": AliasSettings(deployments=["c"]),
    }
    gateway = make_gateway(
        tmp_path,
        {"a": (broken, local()), "b": (backup, local(input_price=5)), "c": (other, local())},
        aliases=aliases,
        settings=GatewaySettings(retry=FAST_RETRY),
    )
    completion, info = run(gateway.chat(chat_request(), CALLER))
    assert completion.choices[0].message.content == "from b"
    assert (info.deployment, info.fallback_used, info.retries) == ("b", True, 2)
    backup.script[:] = [server_error()]
    completion, info = run(gateway.chat(chat_request(cache=False), CALLER))
    assert (completion.choices[0].message.content, info.deployment) == ("from c", "c")


def test_context_overflow_moves_on_without_tripping_the_breaker(tmp_path: Path) -> None:
    small = ScriptedModel([ContextWindowExceeded("too long")])
    large = ScriptedModel(["fits"])
    gateway = make_gateway(
        tmp_path,
        {"small": (small, local(priority=1)), "large": (large, local())},
        aliases={"m": AliasSettings(deployments=["small", "large"], strategy="lowest_cost")},
        settings=GatewaySettings(retry=FAST_RETRY, breaker=BreakerSettings(failures=1)),
    )
    _, info = run(gateway.chat(chat_request(), CALLER))
    assert info.deployment == "large" and len(small.requests) == 1
    assert gateway.dispatcher.deployments["small"].breaker.state == BreakerState.CLOSED


def test_open_breakers_everywhere_is_503_without_calling(tmp_path: Path) -> None:
    model = ScriptedModel([server_error()])
    settings = GatewaySettings(
        retry=RetrySettings(attempts=1), breaker=BreakerSettings(failures=2, cooldown_s=60)
    )
    gateway = make_gateway(tmp_path, {"a": (model, local())}, settings=settings)
    for _ in range(2):
        with pytest.raises(ProviderError):
            run(gateway.chat(chat_request(cache=False), CALLER))
    with pytest.raises(ServiceUnavailableError):
        run(gateway.chat(chat_request(cache=False), CALLER))
    assert len(model.requests) == 2


def deployment(name: str, **settings: Any) -> Deployment:
    return Deployment(name, local(**settings), ScriptedModel(["x"]), CircuitBreaker(BreakerSettings()))


def names(ordered: list[Deployment]) -> list[str]:
    return [d.name for d in ordered]


def test_routing_strategies() -> None:
    cheap, dear = (
        deployment("cheap", input_price=1, size="small"),
        deployment("dear", input_price=9, size="large"),
    )
    question = [ChatMessage(role="user", content="What are your opening hours?")]
    hard = [ChatMessage(role="user", content="Analyze this contract step by step.")]
    assert names(
        order_deployments(AliasSettings(deployments=["x"], strategy="lowest_cost"), [dear, cheap], question)
    ) == ["cheap", "dear"]
    complexity = AliasSettings(deployments=["x"], strategy="complexity")
    assert names(order_deployments(complexity, [dear, cheap], question))[0] == "cheap"
    assert names(order_deployments(complexity, [cheap, dear], hard))[0] == "dear"
    long_prompt = [ChatMessage(role="user", content="word " * 4000)]
    assert names(order_deployments(complexity, [cheap, dear], long_prompt))[0] == "dear"
    cheap.record_latency(0.5)
    latency = AliasSettings(deployments=["x"], strategy="lowest_latency")
    assert names(order_deployments(latency, [cheap, dear], question)) == ["dear", "cheap"], "unmeasured first"
    dear.record_latency(2.0)
    assert names(order_deployments(latency, [cheap, dear], question)) == ["cheap", "dear"]


def test_weighted_routing_follows_weights() -> None:
    heavy, light = deployment("heavy", weight=3), deployment("light", weight=1)
    rng = random.Random(7)
    alias = AliasSettings(deployments=["x"])
    firsts = [order_deployments(alias, [heavy, light], [], rng)[0].name for _ in range(4000)]
    assert 0.70 < firsts.count("heavy") / len(firsts) < 0.80
