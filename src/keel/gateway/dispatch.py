"""Dispatch: one model call across an alias's deployments and its fallback aliases.

For each alias in the chain (the requested one, then its `fallbacks`), deployments are tried in the
router's order. Each deployment gets retries with backoff (`retry.py`) behind its circuit breaker; a
deployment that cannot fit the prompt, or fails for good, hands over to the next one. Only when every
deployment of every alias has failed does the caller see an error — the last one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from opentelemetry.trace import NoOpTracer, Status, StatusCode, Tracer

from keel.config import AliasSettings, RetrySettings
from keel.errors import KeelError, ModelNotFoundError, ServiceUnavailableError
from keel.gateway.deployments import Deployment
from keel.gateway.providers.base import (
    ContextWindowExceeded,
    Generation,
    GenerationRequest,
    ProviderError,
    StreamEvent,
)
from keel.gateway.retry import call_with_retries, with_timeout
from keel.gateway.router import order_deployments
from keel.gateway.tools import restore_arguments
from keel.guard.inbound import InboundGuard
from keel.observe import attributes

T = TypeVar("T")
# Readies a request for one deployment (Keel's own work), then gives the call to time against the upstream.
Prepare = Callable[[Deployment], Awaitable[Callable[[], Awaitable[T]]]]


class BreakerOpen(ProviderError):
    def __init__(self, deployment: str) -> None:
        super().__init__(
            f"Deployment '{deployment}' is failing; its circuit breaker is open.",
            retryable=False,
            code="circuit_open",
        )


@dataclass
class DispatchStats:
    deployment: Deployment | None = None
    retries: int = 0
    fallback_used: bool = False


@dataclass(frozen=True)
class OpenStream:
    first: StreamEvent
    rest: AsyncIterator[StreamEvent]


class Dispatcher:
    def __init__(
        self,
        aliases: dict[str, AliasSettings],
        deployments: dict[str, Deployment],
        retry: RetrySettings,
        tracer: Tracer | None = None,
        guard: InboundGuard | None = None,
    ) -> None:
        self.guard = guard
        self.aliases = aliases
        self.deployments = deployments
        self._retry = retry
        self._tracer = tracer or NoOpTracer()

    def _outbound(
        self, deployment: Deployment, request: GenerationRequest, *, reversible: bool = True
    ) -> tuple[GenerationRequest, Callable[[str], str]]:
        if self.guard is None:
            return request, lambda text: text
        return self.guard.outbound(deployment.settings.provider, request, reversible=reversible)

    async def _outbound_off_loop(
        self, deployment: Deployment, request: GenerationRequest, *, reversible: bool = True
    ) -> tuple[GenerationRequest, Callable[[str], str]]:
        """`_outbound`, on a worker thread when it pseudonymises for an external provider: the name finder
        takes milliseconds of CPU that would stall every other request on the event loop, and it can run
        beside the input guard's classifier."""
        if (
            self.guard is None
            or deployment.settings.provider == "local"
            or self.guard.settings.pii_external == "off"
        ):
            return self._outbound(deployment, request, reversible=reversible)
        return await asyncio.to_thread(self._outbound, deployment, request, reversible=reversible)

    def alias(self, name: str) -> AliasSettings:
        if name not in self.aliases:
            raise ModelNotFoundError(name)
        return self.aliases[name]

    def chain(self, alias_name: str, request: GenerationRequest) -> list[Deployment]:
        """Every deployment that may serve the call, in the order they will be tried."""
        ordered: list[Deployment] = []
        for name in [alias_name, *self.alias(alias_name).fallbacks]:
            alias = self.alias(name)
            candidates = [self.deployments[d] for d in alias.deployments]
            ordered.extend(
                d for d in order_deployments(alias, candidates, request.messages) if d not in ordered
            )
        return ordered

    async def complete(self, alias_name: str, request: GenerationRequest, stats: DispatchStats) -> Generation:
        async def prepare(deployment: Deployment) -> Callable[[], Awaitable[Generation]]:
            outbound, restore = await self._outbound_off_loop(deployment, request)

            async def send() -> Generation:
                generation = await deployment.provider.complete(outbound)
                calls = [restore_arguments(call, restore) for call in generation.tool_calls]
                return replace(generation, text=restore(generation.text), tool_calls=calls)

            return send

        return await self._first_success(alias_name, request, stats, prepare)

    async def open_stream(
        self, alias_name: str, request: GenerationRequest, stats: DispatchStats
    ) -> OpenStream:
        """Retries and fallbacks apply until the first event arrives; after that the stream is committed."""

        async def prepare(deployment: Deployment) -> Callable[[], Awaitable[OpenStream]]:
            # A stream's placeholders could be split across deltas: external streams get redaction only.
            outbound, _ = await self._outbound_off_loop(deployment, request, reversible=False)

            async def first_event() -> OpenStream:
                events = aiter(deployment.provider.stream(outbound))
                return OpenStream(first=await anext(events), rest=events)

            return first_event

        return await self._first_success(alias_name, request, stats, prepare)

    async def _first_success(
        self,
        alias_name: str,
        request: GenerationRequest,
        stats: DispatchStats,
        prepare: Prepare[T],
    ) -> T:
        chain = self.chain(alias_name, request)
        last_error: KeelError | None = None
        for position, deployment in enumerate(chain):
            try:
                result = await self._call_deployment(deployment, prepare, stats)
            except ContextWindowExceeded as exc:
                last_error = exc  # a larger window further down the chain may take it
                continue
            except ProviderError as exc:
                last_error = exc
                continue
            stats.deployment = deployment
            stats.fallback_used = position > 0
            return result
        if isinstance(last_error, BreakerOpen) or last_error is None:
            raise ServiceUnavailableError(
                f"No deployment of '{alias_name}' is available now: their circuit breakers are open.",
                code="no_deployment_available",
            )
        raise last_error

    async def _call_deployment(self, deployment: Deployment, prepare: Prepare[T], stats: DispatchStats) -> T:
        async def attempt() -> T:
            if not deployment.breaker.allow():
                raise BreakerOpen(deployment.name)
            # Keel's own work on the request (pseudonymising it for this provider) is done before the
            # clock starts: the deployment's timeout, latency and breaker judge the upstream alone.
            send = await prepare(deployment)
            with self._tracer.start_as_current_span(f"model {deployment.name}") as span:
                span.set_attribute(attributes.DEPLOYMENT, deployment.name)
                span.set_attribute(attributes.GEN_AI_SYSTEM, deployment.settings.provider)
                span.set_attribute(
                    attributes.GEN_AI_RESPONSE_MODEL, deployment.settings.model or deployment.name
                )
                started = time.perf_counter()
                try:
                    result = await with_timeout(send(), deployment.settings.timeout_s)
                except ContextWindowExceeded:
                    # The deployment works; this prompt is too long for it.
                    deployment.breaker.record_success()
                    raise
                except ProviderError as exc:
                    deployment.breaker.record_failure()
                    span.set_status(Status(StatusCode.ERROR, exc.code))
                    raise
                deployment.breaker.record_success()
                deployment.record_latency(time.perf_counter() - started)
                if isinstance(result, Generation):
                    span.set_attribute(attributes.GEN_AI_INPUT_TOKENS, result.usage.prompt_tokens)
                    span.set_attribute(attributes.GEN_AI_OUTPUT_TOKENS, result.usage.completion_tokens)
                    span.set_attribute(attributes.GEN_AI_FINISH_REASONS, [result.finish_reason])
                return result

        def count_retry(_: BaseException) -> None:
            stats.retries += 1

        return await call_with_retries(attempt, self._retry, on_retry=count_retry)
