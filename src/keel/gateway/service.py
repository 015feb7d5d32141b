"""The gateway: every model call in Keel goes through here.

chat: alias → request shape (structured-output schema) → context window → rate limits → cache (exact,
then semantic) → input guardrails → budget reservation → dispatch (routing, retries, breakers,
fallbacks) → structured-output check with one repair → cost → budget settlement → cache → usage
ledger. The cheap refusals come before the costly checks. Streams follow the same path; retries and
fallbacks apply until the first token. Local model work is done as the caller's tenant (`turns.py`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
from opentelemetry import trace
from opentelemetry.trace import NoOpTracer, Span, Status, StatusCode, Tracer

from keel.config import GatewaySettings
from keel.errors import KeelError, ModelNotFoundError
from keel.gateway.budgets import NO_RESERVATION, BudgetLedger, Reservation
from keel.gateway.cache import CachedAnswer, CacheKeys, ResponseCache, cache_keys
from keel.gateway.context_window import check_context_window
from keel.gateway.cost import cost_of
from keel.gateway.dispatch import Dispatcher, DispatchStats
from keel.gateway.embeddings import embed
from keel.gateway.ledger import CallRecord, PromptUse, UsageLedger
from keel.gateway.limits import RateLimiter
from keel.gateway.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    EmbeddingList,
    EmbeddingRequest,
    ModelCard,
    ModelList,
    Usage,
    completion_id,
)
from keel.gateway.providers.base import (
    EmbeddingProvider,
    Generation,
    GenerationRequest,
    StreamEnd,
    TextDelta,
    ToolCallPart,
)
from keel.gateway.providers.turns import requested_by
from keel.gateway.router import estimate_tokens, prompt_token_bound
from keel.gateway.structured import check_structured_output, generation_request, repair_request, wants_json
from keel.gateway.tools import assemble, check_tool_calls, tool_call_chunk
from keel.gateway.unhonoured import refuse_unhonoured
from keel.guard.pii import redact
from keel.observe import attributes

# A prompt this short is counted on the event loop (well under a millisecond); a longer one on a thread.
_INLINE_COUNT_CHARS = 4096
# The model name usage records and metrics carry for a call to a model that does not exist.
UNKNOWN_MODEL = "(unknown)"


@dataclass(frozen=True)
class Caller:
    tenant: str
    key_id: str
    # Which part of Keel makes the call, for usage reports.
    feature: str = "api"
    # The registry prompt the call was rendered from; recorded on the trace and usage row only.
    prompt: PromptUse | None = None


@dataclass
class CallInfo:
    """What the gateway did for one call; the server reports it in response headers."""

    cache: str = "miss"
    deployment: str | None = None
    retries: int = 0
    fallback_used: bool = False
    cost: Decimal = field(default_factory=Decimal)

    def headers(self) -> dict[str, str]:
        return {
            "x-keel-cache": self.cache,
            "x-keel-deployment": self.deployment or "",
            "x-keel-retries": str(self.retries),
            "x-keel-fallback": "true" if self.fallback_used else "false",
            "x-keel-cost": f"{self.cost:f}",
        }


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        dispatcher: Dispatcher,
        embedding_models: dict[str, EmbeddingProvider],
        limiter: RateLimiter,
        budgets: BudgetLedger,
        cache: ResponseCache,
        ledger: UsageLedger,
        default_completion_tokens: int,
        tracer: Tracer | None = None,
        capture_content: bool = False,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_call = on_call
        self._pending_writes: set[asyncio.Future[None]] = set()
        self._tracer = tracer or NoOpTracer()
        self._capture_content = capture_content
        self.dispatcher = dispatcher
        self.cache = cache
        self._embedding_models = embedding_models
        self._limiter = limiter
        self._budgets = budgets
        self._ledger = ledger
        self._default_completion_tokens = default_completion_tokens
        self._created = int(time.time())

    @property
    def is_ready(self) -> bool:
        chat_ready = all(d.provider.is_ready for d in self.dispatcher.deployments.values())
        return chat_ready and all(p.is_ready for p in self._embedding_models.values())

    def models(self) -> ModelList:
        aliases = [*self.dispatcher.aliases, *self._embedding_models]
        return ModelList(data=[ModelCard(id=alias, created=self._created) for alias in aliases])

    # -- chat ----------------------------------------------------------------------------------------

    async def chat(self, request: ChatCompletionRequest, caller: Caller) -> tuple[ChatCompletion, CallInfo]:
        with self._tracer.start_as_current_span(f"chat {request.model}") as span, requested_by(caller.tenant):
            completion, info = await self._chat(request, caller)
            self._annotate(span, request, caller, info, completion.usage, completion.choices[0].finish_reason)
            if self._capture_content:
                span.set_attribute(
                    attributes.GEN_AI_COMPLETION, redact(completion.choices[0].message.content or "")[:4000]
                )
            return completion, info

    def _annotate(
        self,
        span: Span,
        request: ChatCompletionRequest,
        caller: Caller,
        info: CallInfo,
        usage: Usage,
        finish: str,
    ) -> None:
        span.set_attribute(attributes.GEN_AI_OPERATION, "chat")
        span.set_attribute(attributes.GEN_AI_REQUEST_MODEL, request.model)
        span.set_attribute(attributes.TENANT, caller.tenant)
        if request.prompt_version:
            span.set_attribute(attributes.PROMPT_VERSION, request.prompt_version)
        if caller.prompt is not None:
            span.set_attributes(caller.prompt.span_attributes())
        if request.user:
            span.set_attribute(attributes.USER, request.user)
        span.set_attribute(attributes.DEPLOYMENT, info.deployment or "")
        span.set_attribute(attributes.CACHE, info.cache)
        span.set_attribute(attributes.RETRIES, info.retries)
        span.set_attribute(attributes.FALLBACK, info.fallback_used)
        span.set_attribute(attributes.COST, float(info.cost))
        span.set_attribute(attributes.GEN_AI_INPUT_TOKENS, usage.prompt_tokens)
        span.set_attribute(attributes.GEN_AI_OUTPUT_TOKENS, usage.completion_tokens)
        span.set_attribute(attributes.GEN_AI_FINISH_REASONS, [finish])
        if self._capture_content:
            prompt = "\n".join(f"{m.role}: {m.text()}" for m in request.messages)
            span.set_attribute(attributes.GEN_AI_PROMPT, redact(prompt)[:4000])

    async def _chat(self, request: ChatCompletionRequest, caller: Caller) -> tuple[ChatCompletion, CallInfo]:
        started = time.perf_counter()
        record = CallRecord(
            tenant=caller.tenant,
            key_id=caller.key_id,
            alias=request.model,
            prompt_version=request.prompt_version,
            feature=caller.feature,
        )
        record.mark_prompt(caller.prompt)
        info = CallInfo()
        generation: Generation | None = None
        try:
            generation_input, keys, vector = await self._admit(request, caller)
            cached = await self._cached(keys, vector, info)
            if cached is not None:
                generation = Generation(cached.text, cached.finish_reason, cached.usage)
            else:
                await self._guard_input(request, caller)
                reservation = await self._reserve(request, generation_input, caller)
                generation = await self._generate(request.model, generation_input, reservation, info)
                if keys is not None and await self._cacheable(request, generation.text):
                    self.cache.put(keys, _answer(generation, info), vector)
        except KeelError as exc:
            record.outcome = exc.code
            raise
        finally:
            await self._record(record, info, started, generation)
        assert generation is not None
        completion = ChatCompletion(
            model=request.model,
            choices=[
                Choice(
                    message=AssistantMessage(
                        content=generation.text or (None if generation.tool_calls else ""),
                        tool_calls=generation.tool_calls or None,
                    ),
                    finish_reason=generation.finish_reason,
                )
            ],
            usage=generation.usage,
        )
        return completion, info

    async def _generate(
        self, alias: str, request: GenerationRequest, reservation: Reservation, info: CallInfo
    ) -> Generation:
        stats = DispatchStats()
        spent = Decimal(0)
        try:
            generation = await self.dispatcher.complete(alias, request, stats)
            spent = self._cost(stats, generation.usage)
            check_tool_calls(generation.tool_calls, request)
            if wants_json(request) and generation.finish_reason not in ("length", "tool_calls"):
                try:
                    check_structured_output(generation.text, request)
                except KeelError as problem:
                    # One repair: the model sees its answer and what was wrong with it.
                    repaired = await self.dispatcher.complete(
                        alias, repair_request(request, generation.text, problem.message), stats
                    )
                    spent += self._cost(stats, repaired.usage)
                    usage = Usage.of(
                        generation.usage.prompt_tokens + repaired.usage.prompt_tokens,
                        generation.usage.completion_tokens + repaired.usage.completion_tokens,
                    )
                    generation = Generation(repaired.text, repaired.finish_reason, usage)
                    check_structured_output(generation.text, request)
            return generation
        finally:
            await self._settle(reservation, spent)
            info.deployment = stats.deployment.name if stats.deployment else None
            info.retries, info.fallback_used, info.cost = stats.retries, stats.fallback_used, spent

    # -- streaming -----------------------------------------------------------------------------------

    async def chat_stream(
        self, request: ChatCompletionRequest, caller: Caller, info: CallInfo | None = None
    ) -> AsyncIterator[ChatCompletionChunk]:
        """Chunks in OpenAI's order: the role, content deltas, then the finish reason with usage."""
        info = info or CallInfo()
        started = time.perf_counter()
        record = CallRecord(
            tenant=caller.tenant,
            key_id=caller.key_id,
            alias=request.model,
            stream=True,
            prompt_version=request.prompt_version,
            feature=caller.feature,
        )
        record.mark_prompt(caller.prompt)
        stream_id, created = completion_id(), int(time.time())

        def chunk(delta: Delta, finish: Any = None, **extra: Any) -> ChatCompletionChunk:
            choices = [ChunkChoice(delta=delta, finish_reason=finish)]
            return ChatCompletionChunk(
                id=stream_id, created=created, model=request.model, choices=choices, **extra
            )

        generation: Generation | None = None
        # Not the current span: the context would not survive this generator's yields.
        span = self._tracer.start_span(f"chat {request.model}", attributes={"keel.stream": True})
        try:
            # The tenant is named around each step, never across a yield: the consumer's context is not ours.
            with requested_by(caller.tenant):
                generation_input, keys, vector = await self._admit(request, caller)
            yield chunk(Delta(role="assistant", content=""))
            cached = await self._cached(keys, vector, info)
            if cached is not None:
                generation = Generation(cached.text, cached.finish_reason, cached.usage)
                yield chunk(Delta(content=cached.text))
            else:
                with requested_by(caller.tenant):
                    await self._guard_input(request, caller)
                reservation = await self._reserve(request, generation_input, caller)
                stats = DispatchStats()
                pieces: list[str] = []
                parts: list[ToolCallPart] = []
                end: StreamEnd | None = None
                try:
                    with requested_by(caller.tenant):
                        opened = await self.dispatcher.open_stream(request.model, generation_input, stats)
                    async for event in _prepend(opened.first, opened.rest):
                        if isinstance(event, TextDelta):
                            pieces.append(event.text)
                            yield chunk(Delta(content=event.text))
                        elif isinstance(event, ToolCallPart):
                            parts.append(event)
                            yield chunk(Delta(tool_calls=[tool_call_chunk(event)]))
                        else:
                            end = event
                finally:
                    usage = end.usage if end else Usage.of(0, 0)
                    info.cost = self._cost(stats, usage)
                    await self._settle(reservation, info.cost)
                    info.deployment = stats.deployment.name if stats.deployment else None
                    info.retries, info.fallback_used = stats.retries, stats.fallback_used
                assert end is not None, "a provider stream ends with StreamEnd"
                generation = Generation("".join(pieces), end.finish_reason, end.usage, assemble(parts))
                check_tool_calls(generation.tool_calls, generation_input)
                if generation.finish_reason not in ("length", "tool_calls"):
                    check_structured_output(generation.text, generation_input)
                if keys is not None and await self._cacheable(request, generation.text):
                    self.cache.put(keys, _answer(generation, info), vector)
            # Usage once, in a last chunk of its own, and only when asked (as OpenAI does): a client
            # that adds up every chunk's usage (LangChain's stream_usage) must not count it twice.
            yield chunk(Delta(), generation.finish_reason)
            if request.stream_options is not None and request.stream_options.include_usage:
                yield ChatCompletionChunk(
                    id=stream_id, created=created, model=request.model, choices=[], usage=generation.usage
                )
        except KeelError as exc:
            record.outcome = exc.code
            span.set_status(Status(StatusCode.ERROR, exc.code))
            raise
        finally:
            usage = generation.usage if generation else Usage.of(0, 0)
            self._annotate(
                span, request, caller, info, usage, generation.finish_reason if generation else "error"
            )
            span.end()
            await self._record(record, info, started, generation)

    # -- the steps -----------------------------------------------------------------------------------

    async def _admit(
        self, request: ChatCompletionRequest, caller: Caller
    ) -> tuple[GenerationRequest, CacheKeys | None, npt.NDArray[np.float32] | None]:
        """Checks the request and the caller's limits; returns what generation and the cache need."""
        refuse_unhonoured(request)
        self.dispatcher.alias(request.model)
        generation_input = generation_request(request)
        chain = self.dispatcher.chain(request.model, generation_input)
        if sum(len(m.text()) for m in request.messages) < _INLINE_COUNT_CHARS and all(
            d.provider.is_ready for d in chain
        ):
            check_context_window(request.model, chain, request.messages)
        else:  # tokenizing up to a context window's worth (or a model still loading): off the loop
            await asyncio.to_thread(check_context_window, request.model, chain, request.messages)
        tokens = estimate_tokens(request.messages) + (
            request.token_limit() or self._default_completion_tokens
        )
        self._limiter.acquire(caller.key_id, caller.tenant, tokens)
        # Answers are cached as text: a request offering tools is never answered from the cache.
        use_cache = (
            request.cache
            and not request.tools
            and (self.cache.settings.exact or self.cache.settings.semantic)
        )
        keys = cache_keys(caller.tenant, request) if use_cache else None
        vector = None
        if keys is not None and self.cache.settings.semantic and keys.last_user_message:
            embedder = next(iter(self._embedding_models.values()), None)
            if embedder is not None:
                vector = (await embedder.aembed([keys.last_user_message]))[0]
        return generation_input, keys, vector

    async def _cacheable(self, request: ChatCompletionRequest, answer: str) -> bool:
        """Caches keep no personal data (docs/guardrails.md): an answer is cached only when neither it nor
        its prompt holds any, as the guard's own detector finds it (off the event loop)."""
        guard = self.dispatcher.guard
        if guard is None:
            return True
        texts = [*(m.text() for m in request.messages), answer]
        return not await asyncio.to_thread(lambda: any(guard.pii.detect(text) for text in texts))

    async def _guard_input(self, request: ChatCompletionRequest, caller: Caller) -> None:
        """Only on a cache miss: a cached answer was made for a request that passed, and a hit costs no
        model call to protect. The copilot screens its customers' messages itself (and escalates)."""
        if caller.feature == "api" and self.dispatcher.guard is not None:
            await self.dispatcher.guard.aenforce_on_api(request.messages)

    async def _cached(
        self, keys: CacheKeys | None, vector: npt.NDArray[np.float32] | None, info: CallInfo
    ) -> CachedAnswer | None:
        if keys is None:
            return None
        if self.cache.settings.exact and (answer := self.cache.get_exact(keys)) is not None:
            info.cache, info.deployment = "exact", answer.deployment
            return answer
        if vector is not None and (found := self.cache.get_semantic(keys, vector)) is not None:
            info.cache, info.deployment = "semantic", found[0].deployment
            return found[0]
        return None

    async def _reserve(
        self, request: ChatCompletionRequest, generation: GenerationRequest, caller: Caller
    ) -> Reservation:
        if not self._budgets.applies(caller.key_id, caller.tenant):
            return NO_RESERVATION  # no budget configured: no database round trip, no thread hop
        return await asyncio.to_thread(self._worst_case_reservation, request, generation, caller)

    async def _settle(self, reservation: Reservation, spent: Decimal) -> None:
        if reservation.counters:
            await asyncio.to_thread(self._budgets.settle, reservation, spent)

    def _worst_case_reservation(
        self, request: ChatCompletionRequest, generation: GenerationRequest, caller: Caller
    ) -> Reservation:
        prompt = prompt_token_bound(request.messages)
        completion = request.token_limit() or self._default_completion_tokens
        chain = self.dispatcher.chain(request.model, generation)
        worst = max((cost_of(d.settings, prompt, completion) for d in chain), default=Decimal(0))
        # A schema may cost one repair: the conversation again, plus the first answer.
        if wants_json(generation):
            worst = worst * 2 + max((cost_of(d.settings, completion, 0) for d in chain), default=Decimal(0))
        return self._budgets.reserve(caller.key_id, caller.tenant, worst)

    @staticmethod
    def _cost(stats: DispatchStats, usage: Usage) -> Decimal:
        if stats.deployment is None:
            return Decimal(0)
        return cost_of(stats.deployment.settings, usage.prompt_tokens, usage.completion_tokens)

    async def _record(
        self, record: CallRecord, info: CallInfo, started: float, generation: Generation | None
    ) -> None:
        record.latency_ms = int((time.perf_counter() - started) * 1000)
        if record.alias not in self.dispatcher.aliases:
            # A call to a model no alias names (a 404) is counted under one name: callers cannot fill the
            # usage reports and the metrics' labels with names of their own choosing.
            record.alias = UNKNOWN_MODEL
        record.cache, record.deployment = info.cache, info.deployment
        record.retries, record.fallback_used, record.cost = info.retries, info.fallback_used, info.cost
        if generation is not None and info.cache == "miss":
            record.prompt_tokens = generation.usage.prompt_tokens
            record.completion_tokens = generation.usage.completion_tokens
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = f"{context.trace_id:032x}"
        if self._on_call is not None:
            self._on_call(record)
        # Handed to a worker thread at once and not awaited: off the request path, and still written when
        # the event loop ends first (the loop's executor finishes its work); `drain()` waits for them.
        write = asyncio.get_running_loop().run_in_executor(None, self._ledger.write_safely, record)
        self._pending_writes.add(write)
        write.add_done_callback(self._pending_writes.discard)

    async def drain(self) -> None:
        """Waits for the usage records still being written (a clean shutdown loses none)."""
        if self._pending_writes:
            await asyncio.gather(*self._pending_writes, return_exceptions=True)

    # -- embeddings ----------------------------------------------------------------------------------

    def embedding_model(self, alias: str) -> EmbeddingProvider:
        try:
            return self._embedding_models[alias]
        except KeyError:
            raise ModelNotFoundError(alias) from None

    async def embed(self, request: EmbeddingRequest, caller: Caller | None = None) -> EmbeddingList:
        """Embeds as the caller's tenant: a large request takes turns with everyone else's."""
        if caller is None:
            return await embed(self.embedding_model(request.model), request)
        with requested_by(caller.tenant):
            return await embed(self.embedding_model(request.model), request)


def _answer(generation: Generation, info: CallInfo) -> CachedAnswer:
    return CachedAnswer(generation.text, generation.finish_reason, generation.usage, info.deployment)


async def _prepend(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item
