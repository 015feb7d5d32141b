"""The gateway's wrappers assembled in one place, outermost first.

tracing → usage ledger → request checks and context window → rate limits → cache (exact, then
semantic) → input guard (concurrent with the rest) → budget reservation → structured-output repair →
dispatch (routing, retries, breakers, fallbacks). The cheap refusals come before the costly steps; a
cache hit asks no guard, budget or model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from opentelemetry.trace import Tracer

from keel.gateway.budgets import BudgetLedger
from keel.gateway.cache import ResponseCache
from keel.gateway.dispatch import Dispatcher
from keel.gateway.ledger import CallRecord, UsageLedger
from keel.gateway.limits import RateLimiter
from keel.gateway.model import ChatModel
from keel.gateway.providers.base import EmbeddingProvider
from keel.gateway.wrappers.admission import Checked, RateLimited
from keel.gateway.wrappers.budgeting import Budgeted
from keel.gateway.wrappers.caching import Cached
from keel.gateway.wrappers.dispatched import Dispatched
from keel.gateway.wrappers.guarding import Guarded
from keel.gateway.wrappers.recording import Recorded
from keel.gateway.wrappers.repairing import Repaired
from keel.gateway.wrappers.tracing import Traced


@dataclass(frozen=True)
class Stack:
    model: ChatModel
    # The ledger wrapper, whose pending writes a clean shutdown waits for.
    ledger: Recorded


def assemble(
    dispatcher: Dispatcher,
    limiter: RateLimiter,
    budgets: BudgetLedger,
    cache: ResponseCache,
    ledger: UsageLedger,
    embedder: Callable[[], EmbeddingProvider | None],
    default_completion_tokens: int,
    tracer: Tracer,
    capture_content: bool = False,
    on_call: Callable[[CallRecord], None] | None = None,
) -> Stack:
    model: ChatModel = Dispatched(dispatcher)
    model = Repaired(model)
    model = Budgeted(model, budgets, dispatcher, default_completion_tokens)
    model = Guarded(model, lambda: dispatcher.guard)
    model = Cached(model, cache, embedder, lambda: dispatcher.guard)
    model = RateLimited(model, limiter, default_completion_tokens)
    model = Checked(model, dispatcher)
    recorded = Recorded(model, ledger, dispatcher.aliases, on_call)
    return Stack(Traced(recorded, tracer, capture_content), recorded)
