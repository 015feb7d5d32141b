"""The gateway: every model call in Keel goes through here.

A facade over the stack of wrappers (`stack.py`): `chat` collects an answer, `chat_stream` relays it
as OpenAI's chunks; both open it the same way. Local model work is done as the caller's tenant
(`turns.py`), named around the opening only, never across a stream's yields.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from opentelemetry.trace import NoOpTracer, Tracer

from keel.config import GatewaySettings
from keel.errors import ModelNotFoundError
from keel.gateway.budgets import BudgetLedger
from keel.gateway.cache import ResponseCache
from keel.gateway.dispatch import Dispatcher
from keel.gateway.embeddings import embed
from keel.gateway.ledger import CallRecord, UsageLedger
from keel.gateway.limits import RateLimiter
from keel.gateway.model import EXTERNAL, INTERNAL, Answer, Caller, CallPolicy, ChatCall, collect
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
    completion_id,
)
from keel.gateway.providers.base import EmbeddingProvider, StreamEnd, TextDelta, ToolCallPart
from keel.gateway.providers.turns import requested_by
from keel.gateway.stack import assemble
from keel.gateway.tools import tool_call_chunk
from keel.gateway.wrappers.recording import UNKNOWN_MODEL

__all__ = ["EXTERNAL", "INTERNAL", "UNKNOWN_MODEL", "CallPolicy", "Caller", "Gateway", "response_headers"]


def response_headers(record: CallRecord) -> dict[str, str]:
    """What the gateway did for a call, as the server reports it."""
    return {
        "x-keel-cache": record.cache,
        "x-keel-deployment": record.deployment or "",
        "x-keel-retries": str(record.retries),
        "x-keel-fallback": "true" if record.fallback_used else "false",
        "x-keel-cost": f"{record.cost:f}",
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
        self.dispatcher = dispatcher
        self.cache = cache
        self._embedding_models = embedding_models
        self._created = int(time.time())
        self._stack = assemble(
            dispatcher,
            limiter,
            budgets,
            cache,
            ledger,
            lambda: next(iter(self._embedding_models.values()), None),
            default_completion_tokens,
            tracer or NoOpTracer(),
            capture_content,
            on_call,
        )

    @property
    def is_ready(self) -> bool:
        chat_ready = all(d.provider.is_ready for d in self.dispatcher.deployments.values())
        return chat_ready and all(p.is_ready for p in self._embedding_models.values())

    def models(self) -> ModelList:
        aliases = [*self.dispatcher.aliases, *self._embedding_models]
        return ModelList(data=[ModelCard(id=alias, created=self._created) for alias in aliases])

    async def _open(self, call: ChatCall) -> Answer:
        with requested_by(call.caller.tenant):
            return await self._stack.model.open(call)

    async def chat(self, request: ChatCompletionRequest, caller: Caller) -> tuple[ChatCompletion, CallRecord]:
        call = ChatCall(request, caller, stream=False)
        generation = await collect(await self._open(call))
        # An answer that only calls tools has no content (null, as OpenAI sends it).
        content = generation.text or (None if generation.tool_calls else "")
        message = AssistantMessage(content=content, tool_calls=generation.tool_calls or None)
        completion = ChatCompletion(
            model=request.model,
            choices=[Choice(message=message, finish_reason=generation.finish_reason)],
            usage=generation.usage,
        )
        return completion, call.record

    def chat_stream(self, request: ChatCompletionRequest, caller: Caller) -> ChatStream:
        return ChatStream(self, ChatCall(request, caller, stream=True))

    async def drain(self) -> None:
        """Waits for the usage records still being written (a clean shutdown loses none)."""
        await self._stack.ledger.drain()

    def settle_usage(self) -> bool:
        """Stores the usage records still pending (for a report read right after a call); False when
        the writer did not finish within a few seconds."""
        return self._stack.ledger.flush()

    def close(self) -> None:
        """Stores the usage records still queued and stops their writer (a command's clean exit)."""
        self._stack.ledger.close()

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


class ChatStream:
    """A streamed chat answer as OpenAI's chunks: the role (once the answer has begun, so a refusal
    before it still gets its own status), content and tool-call deltas, the finish reason, then usage if
    asked. `record` says what the gateway did, for the response headers."""

    def __init__(self, gateway: Gateway, call: ChatCall) -> None:
        self.record = call.record
        self._chunks = self._relay(gateway, call)

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        return await anext(self._chunks)

    async def aclose(self) -> None:
        await self._chunks.aclose()

    @staticmethod
    async def _relay(gateway: Gateway, call: ChatCall) -> AsyncGenerator[ChatCompletionChunk]:
        request = call.request
        stream_id, created = completion_id(), int(time.time())

        def chunk(delta: Delta, finish: Any = None) -> ChatCompletionChunk:
            choices = [ChunkChoice(delta=delta, finish_reason=finish)]
            return ChatCompletionChunk(id=stream_id, created=created, model=request.model, choices=choices)

        answer = await gateway._open(call)
        async with contextlib.aclosing(answer):
            yield chunk(Delta(role="assistant", content=""))
            async for event in answer:
                if isinstance(event, TextDelta):
                    yield chunk(Delta(content=event.text))
                    continue
                if isinstance(event, ToolCallPart):
                    yield chunk(Delta(tool_calls=[tool_call_chunk(event)]))
                    continue
                assert isinstance(event, StreamEnd)
                # Usage once, in a last chunk of its own, and only when asked (as OpenAI does): a client
                # that adds up every chunk's usage (LangChain's stream_usage) must not count it twice.
                yield chunk(Delta(), event.finish_reason)
                if request.stream_options is not None and request.stream_options.include_usage:
                    yield ChatCompletionChunk(
                        id=stream_id, created=created, model=request.model, choices=[], usage=event.usage
                    )
