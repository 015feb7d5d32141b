"""What a run evaluates: the copilot, retrieval alone, or a bare chat model, each over one item.

A target returns what the metrics need (the reply, its status and citations with their passages, the
ranked documents) and never scores anything itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from keel.config import CopilotSettings
from keel.copilot.memory import ConversationMemory, rewrite_query
from keel.copilot.pipeline import Copilot
from keel.copilot.types import ReplyRequest
from keel.evals.items import DatasetItem
from keel.evals.usage import TraceUsage
from keel.gateway.protocol import ChatCompletionRequest
from keel.gateway.service import INTERNAL, Caller, Gateway
from keel.knowledge.index.base import SearchScope
from keel.knowledge.retrieval import Retriever, SearchRequest, SearchResult
from keel.store.channels import EVAL_CHANNEL

TargetName = Literal["copilot", "retrieval", "chat"]
TARGETS: tuple[str, ...] = ("copilot", "retrieval", "chat")
# The cost and prompt versions of the model calls a trace made (the gateway's usage records).
UsageOfTrace = Callable[[str], TraceUsage]


@dataclass
class TargetOutput:
    reply: str | None = None
    status: str | None = None
    # (source, document id) of each cited chunk, in citation order
    cited: list[tuple[str, str]] = field(default_factory=list)
    # (chunk id, text) of each cited chunk, once each: what groundedness checks the reply against
    cited_passages: list[tuple[str, str]] = field(default_factory=list)
    # (source, document id) of each retrieved chunk, best first
    retrieved: list[tuple[str, str]] = field(default_factory=list)
    top_score: float | None = None
    cost_micros: int = 0
    # The prompt versions the model calls used, as the gateway recorded them.
    prompt_versions: list[str] = field(default_factory=list)
    # The same calls' prompts with the label that served each ({name, version, label}).
    prompts: list[dict[str, Any]] = field(default_factory=list)
    # The trace the target's own work opened, when it reports one (the copilot's reply does).
    trace_id: str | None = None
    escalation_reasons: list[str] = field(default_factory=list)


class Target(Protocol):
    name: str

    async def run(self, item: DatasetItem, tenant: str) -> TargetOutput: ...


def _retrieved(results: list[SearchResult]) -> tuple[list[tuple[str, str]], float | None]:
    ranked = [(r.source, r.document_id) for r in results]
    top = results[0].scores["vector"].score if results and "vector" in results[0].scores else None
    return ranked, top


class RetrievalTarget:
    """The retriever alone, asked the item's question (a follow-up joined to the previous question,
    as the copilot rewrites it)."""

    name = "retrieval"

    def __init__(self, retriever: Retriever, k: int, mode: Literal["keyword", "vector", "hybrid"]) -> None:
        self._retriever = retriever
        self._k = k
        self._mode = mode

    async def run(self, item: DatasetItem, tenant: str) -> TargetOutput:
        history: list[tuple[str, str]] = [(t.role, t.content) for t in item.history]
        request = SearchRequest(
            query=rewrite_query(item.question, history)[:4000], k=self._k, mode=self._mode
        )
        found = await self._retriever.search(request, SearchScope(tenant=tenant))
        ranked, top = _retrieved(found.results)
        return TargetOutput(retrieved=ranked, top_score=top)


class CopilotTarget:
    """The support copilot's whole pipeline. A conversation's earlier turns are put in its memory first
    (the reference history, as multi-turn benchmarks give it); its retrieval stage is asked the same
    rewritten question separately, for the retrieval metrics."""

    name = "copilot"

    def __init__(
        self,
        copilot: Copilot,
        retriever: Retriever,
        settings: CopilotSettings,
        memory: ConversationMemory,
        gateway: Gateway,
        usage_of_trace: UsageOfTrace,
        k: int,
    ) -> None:
        self._copilot = copilot
        self._retriever = retriever
        self._settings = settings
        self._memory = memory
        self._gateway = gateway
        self._usage_of_trace = usage_of_trace
        self._k = k

    def _seed(self, tenant: str, item: DatasetItem) -> str | None:
        if not item.history:
            return None
        conversation_id = self._memory.open(tenant, None, None, "eval")
        for turn in item.history:
            self._memory.append(conversation_id, "user" if turn.role == "user" else "assistant", turn.content)
        return conversation_id

    async def run(self, item: DatasetItem, tenant: str) -> TargetOutput:
        conversation_id = await asyncio.to_thread(self._seed, tenant, item)
        reply = await self._copilot.reply(
            ReplyRequest(message=item.question[:4000], conversation_id=conversation_id, channel=EVAL_CHANNEL),
            Caller(tenant=tenant, key_id="eval", feature="eval", policy=INTERNAL),
        )
        history: list[tuple[str, str]] = [(t.role, t.content) for t in item.history]
        scope = SearchScope(tenant=tenant, acl_groups=frozenset(self._settings.acl_groups))
        request = SearchRequest(query=rewrite_query(item.question, history)[:4000], k=self._k)
        found = await self._retriever.search(request, scope)
        ranked, top = _retrieved(found.results)
        texts = {r.chunk_id: r.text for r in found.results}
        passages = {c.chunk_id: texts.get(c.chunk_id, c.quote) for c in reply.citations}
        # Usage is written off the request path; wait for it before adding up the trace's cost.
        await self._gateway.drain()
        usage = await asyncio.to_thread(self._usage_of_trace, reply.trace_id)
        return TargetOutput(
            reply=reply.reply,
            status=reply.status,
            cited=[(c.source, c.document_id) for c in reply.citations],
            cited_passages=list(passages.items()),
            retrieved=ranked,
            top_score=top,
            cost_micros=usage.cost_micros,
            prompt_versions=usage.prompt_versions,
            prompts=usage.prompts,
            trace_id=reply.trace_id,
            escalation_reasons=reply.escalation_reasons,
        )


class ChatTarget:
    """A bare model alias through the gateway, no retrieval: the baseline the copilot should beat."""

    name = "chat"

    def __init__(self, gateway: Gateway, alias: str, max_tokens: int) -> None:
        self._gateway = gateway
        self._alias = alias
        self._max_tokens = max_tokens

    async def run(self, item: DatasetItem, tenant: str) -> TargetOutput:
        messages = [{"role": t.role, "content": t.content} for t in item.history]
        messages.append({"role": "user", "content": item.question})
        request = ChatCompletionRequest.model_validate(
            {"model": self._alias, "messages": messages, "max_tokens": self._max_tokens, "cache": False}
        )
        completion, info = await self._gateway.chat(
            request, Caller(tenant=tenant, key_id="eval", feature="eval", policy=INTERNAL)
        )
        return TargetOutput(
            reply=completion.choices[0].message.content,
            status="answered",
            cost_micros=int(info.cost * 1_000_000),
        )
