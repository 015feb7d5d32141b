"""The innermost model: one deployment of the alias's chain answers (`dispatch.py`), and is charged."""

from __future__ import annotations

from collections.abc import AsyncIterator

from keel.gateway.cost import cost_of
from keel.gateway.dispatch import Dispatcher, DispatchStats
from keel.gateway.ledger import CallRecord
from keel.gateway.model import Answer, ChatCall, answer_of, prepend
from keel.gateway.protocol import Usage
from keel.gateway.providers.base import StreamEnd, StreamEvent


class Dispatched:
    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher

    async def open(self, call: ChatCall) -> Answer:
        stats = DispatchStats()
        try:
            if call.stream:
                opened = await self.dispatcher.open_stream(call.request.model, call.generation, stats)
            else:
                # A whole answer is one upstream body, cheaper than a stream of them.
                generation = await self.dispatcher.complete(call.request.model, call.generation, stats)
        finally:
            _note(call.record, stats)
        if not call.stream:
            _charge(call.record, stats, generation.usage)
            return answer_of(generation)
        return Answer(_charged(prepend(opened.first, opened.rest), call.record, stats))


async def _charged(
    events: AsyncIterator[StreamEvent], record: CallRecord, stats: DispatchStats
) -> AsyncIterator[StreamEvent]:
    usage = Usage.of(0, 0)
    try:
        async for event in events:
            if isinstance(event, StreamEnd):
                usage = event.usage
            yield event
    finally:
        _charge(record, stats, usage)


def _note(record: CallRecord, stats: DispatchStats) -> None:
    record.deployment = stats.deployment.name if stats.deployment else record.deployment
    record.retries += stats.retries
    record.fallback_used = record.fallback_used or stats.fallback_used


def _charge(record: CallRecord, stats: DispatchStats, usage: Usage) -> None:
    """Every generation adds to the call's tokens and cost (a repaired answer costs two)."""
    record.prompt_tokens += usage.prompt_tokens
    record.completion_tokens += usage.completion_tokens
    if stats.deployment is not None:
        record.cost += cost_of(stats.deployment.settings, usage.prompt_tokens, usage.completion_tokens)
