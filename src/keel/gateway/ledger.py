"""The usage ledger: one row per gateway call, written off the event loop."""

from __future__ import annotations

import queue
import threading
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import insert

from keel.gateway.budgets import to_micros
from keel.logs import get_logger
from keel.observe import attributes
from keel.store.engine import Database
from keel.store.models import UsageRecord

log = get_logger(__name__)


@dataclass(frozen=True)
class PromptUse:
    """The registry prompt a call was rendered from: recorded on the call's trace and usage row."""

    name: str
    version: int
    # None when the request pinned a version instead of naming a label.
    label: str | None = None
    # The experiment (or canary) that chose the version or model, and the arm it chose.
    experiment: str | None = None
    arm: str | None = None

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"

    def span_attributes(self) -> dict[str, str | int]:
        found = {
            attributes.PROMPT_NAME: self.name,
            attributes.PROMPT_VERSION: self.tag,
            attributes.PROMPT_LABEL: self.label,
            attributes.EXPERIMENT: self.experiment,
            attributes.EXPERIMENT_ARM: self.arm,
        }
        return {key: value for key, value in found.items() if value is not None}


@dataclass
class CallRecord:
    tenant: str
    key_id: str
    alias: str
    deployment: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)
    latency_ms: int = 0
    cache: str = "miss"
    retries: int = 0
    fallback_used: bool = False
    stream: bool = False
    outcome: str = "ok"
    prompt_version: str | None = None
    feature: str = "api"
    trace_id: str | None = None
    prompt_label: str | None = None
    experiment: str | None = None
    experiment_arm: str | None = None

    def mark_prompt(self, use: PromptUse | None) -> None:
        if use is not None:
            self.prompt_version, self.prompt_label = use.tag, use.label
            self.experiment, self.experiment_arm = use.experiment, use.arm


class UsageLedger:
    """`write` stores a record now; `submit` hands it to one writer thread, which stores whatever has
    queued meanwhile in one statement and one transaction. Under load that is one commit for many calls
    instead of one each, and the request path pays a queue put instead of a thread hop (and the event
    loop does not contend for the GIL with a writer per request)."""

    # Records per statement at most; a backlog larger than this is written in several.
    BATCH = 500

    def __init__(self, database: Database) -> None:
        self._database = database
        self._queue: queue.SimpleQueue[CallRecord | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()
        # Submitted and not yet stored (or given up on); `flush` waits for it to reach zero.
        self._unsettled = 0
        self._settled = threading.Condition()

    def write(self, record: CallRecord) -> None:
        self.write_many([record])

    def write_many(self, records: list[CallRecord]) -> None:
        with self._database.session() as session:
            session.execute(insert(UsageRecord), [_row(record) for record in records])

    def write_safely(self, record: CallRecord) -> None:
        self._write_safely([record])

    def submit(self, record: CallRecord) -> None:
        """Stores the record on the writer thread; never blocks, never raises for a failed write."""
        with self._settled:
            self._unsettled += 1
        self._ensure_writer()
        self._queue.put(record)

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every submitted record is stored (or its failure logged); False on a timeout."""
        with self._settled:
            return self._settled.wait_for(lambda: self._unsettled == 0, timeout)

    def close(self) -> None:
        """Stores what is queued, then stops the writer thread."""
        with self._start_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            self._queue.put(None)
            writer.join()

    def _ensure_writer(self) -> None:
        if self._writer is not None:
            return
        with self._start_lock:
            if self._writer is None:
                # A daemon, so that a forgotten `close` never keeps a process alive; the server's
                # shutdown flushes it first, so a clean stop loses no record.
                self._writer = threading.Thread(target=self._run, name="keel-usage-ledger", daemon=True)
                self._writer.start()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [] if first is None else [first]
            stop = first is None
            while not stop and len(batch) < self.BATCH:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                else:
                    batch.append(more)
            if batch:
                self._write_safely(batch)
                with self._settled:
                    self._unsettled -= len(batch)
                    self._settled.notify_all()
            if stop:
                return

    def _write_safely(self, records: list[CallRecord]) -> None:
        try:
            self.write_many(records)
        except Exception:
            # The answers were given; a failed ledger write is logged, never turned into a failed request.
            for record in records:
                log.exception("usage_record_failed", alias=record.alias, tenant=record.tenant)


def _row(record: CallRecord) -> dict[str, Any]:
    fields = asdict(record)
    fields["cost_micros"] = to_micros(fields.pop("cost"))
    return fields
