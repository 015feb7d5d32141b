"""The usage ledger: one row per call, however it ended, written off the request path."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Container

from opentelemetry import trace

from keel.errors import KeelError
from keel.gateway.ledger import CallRecord, UsageLedger
from keel.gateway.model import Answer, ChatCall, ChatModel

# The model name usage records and metrics carry for a call to a model that does not exist.
UNKNOWN_MODEL = "(unknown)"


class Recorded:
    def __init__(
        self,
        inner: ChatModel,
        ledger: UsageLedger,
        aliases: Container[str],
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> None:
        self.inner = inner
        self._ledger = ledger
        self._aliases = aliases
        self._on_call = on_call

    async def open(self, call: ChatCall) -> Answer:
        started = time.perf_counter()
        record = call.record
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = f"{context.trace_id:032x}"

        async def finish(error: BaseException | None) -> None:
            if isinstance(error, KeelError):
                record.outcome = error.code
            record.latency_ms = int((time.perf_counter() - started) * 1000)
            self._write(record)

        try:
            answer = await self.inner.open(call)
        except BaseException as exc:
            await finish(exc)
            raise
        return Answer(answer, finish=finish)

    def _write(self, record: CallRecord) -> None:
        if record.alias not in self._aliases:
            # A call to a model no alias names (a 404) is counted under one name: callers cannot fill the
            # usage reports and the metrics' labels with names of their own choosing.
            record.alias = UNKNOWN_MODEL
        if self._on_call is not None:
            self._on_call(record)
        self._ledger.submit(record)  # stored by the ledger's writer thread, off the request path

    async def drain(self) -> None:
        """Waits for the usage records still being written (a clean shutdown loses none)."""
        await asyncio.to_thread(self._ledger.flush)

    def flush(self) -> bool:
        return self._ledger.flush(timeout=5.0)

    def close(self) -> None:
        self._ledger.close()
