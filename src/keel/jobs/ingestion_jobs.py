"""Ingestion as jobs: a batch of documents becomes one job with one item per document.

Items are stored with their payload before the job is queued; each item is processed in its own
transaction that also marks it done, so a crash at any point leaves every item either done or pending,
and a resumed job processes each document exactly once.

A consumer that is stopping (`stop_claiming`) finishes the batch in hand and puts the rest of the job
back on the queue, so another consumer carries on at once instead of after the stale-claim timeout.

The documents themselves are stored by the `IngestBatch` the runtime passes in (knowledge's ingestion):
it reports each stored document through `ItemDone`, inside the transaction that stored it, and this
module alone writes the job's rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from huey import Huey
from sqlalchemy import select, update
from sqlalchemy.orm import Session, selectinload, undefer

from keel.errors import KeelError, NotFoundError
from keel.logs import get_logger
from keel.store.engine import Database
from keel.store.models import Job as JobRow
from keel.store.models import JobItem as JobItemRow
from keel.store.records import copied

log = get_logger(__name__)
INGEST_TASK = "keel.ingest"
# Documents loaded and embedded together: big enough for efficient embedding batches.
BATCH = 16


@dataclass(frozen=True)
class JobItem:
    """One document of a job, as this service reports it (a copy: callers never hold the job's rows)."""

    source: str
    status: str
    outcome: str | None
    error: str | None
    document_id: str | None

    @classmethod
    def of(cls, row: JobItemRow) -> JobItem:
        return copied(cls, row)


@dataclass(frozen=True)
class Job:
    """A job as this service reports it; `items` is empty where the caller did not ask for them."""

    id: str
    tenant: str
    kind: str
    status: str
    total: int
    created_at: datetime
    finished_at: datetime | None
    items: tuple[JobItem, ...] = ()

    @classmethod
    def of(cls, row: JobRow, *, with_items: bool = False) -> Job:
        items = tuple(JobItem.of(item) for item in row.items) if with_items else ()
        return copied(cls, row, items=items)


@dataclass(frozen=True)
class NewDocument:
    source: str
    data: bytes
    doc_type: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    acl: list[str] = field(default_factory=list)


ItemCallback = Callable[[JobItem], None]
# Reports a stored document: the storing transaction, its position in the batch, its id and the outcome
# ("created", "updated", "unchanged").
ItemDone = Callable[[Session, int, str, str], None]


# Stores a batch of one tenant's documents, calling `ItemDone` for each stored one; returns one result per
# document in order, an exception in place of a document that failed.
IngestBatch = Callable[[str, list[NewDocument], ItemDone], Sequence[object]]
# What to store of a document's bytes (source, data, doc_type) until it is done: a form the database can
# scan for personal data. None: the bytes as they are.
QueuedData = Callable[[str, bytes, str | None], bytes]


class IngestionJobs:
    def __init__(
        self,
        database: Database,
        ingest: IngestBatch,
        queue: Huey,
        *,
        stale_after_s: float = 60.0,
        queued_data: QueuedData | None = None,
    ) -> None:
        self._database = database
        # A job silent this long has lost its consumer; a running one beats four times as often.
        self._stale_after_s = stale_after_s
        self._ingest = ingest
        self._queued_data = queued_data
        self._queue = queue
        self._task = queue.task(name=INGEST_TASK, context=False)(self.run)
        self._stopping = threading.Event()
        # Items this process has claimed and not yet finished, by job and thread (a job's message may be
        # delivered twice, to two threads of one process): the heartbeat keeps them claimed.
        self._in_flight: dict[tuple[str, int], list[str]] = {}
        self._in_flight_lock = threading.Lock()

    def stop_claiming(self) -> None:
        """Shutdown has begun: the batch in progress finishes; no job here takes another batch."""
        self._stopping.set()

    def submit(self, tenant: str, documents: list[NewDocument], *, enqueue: bool = True) -> Job:
        """Stores the batch, then queues it (`enqueue=False`: the caller runs it itself)."""
        with self._database.session() as session:
            job = JobRow(tenant=tenant, kind="ingest", total=len(documents))
            session.add(job)
            session.flush()
            session.add_all(
                JobItemRow(
                    job_id=job.id,
                    ordinal=i,
                    source=d.source,
                    doc_type=d.doc_type,
                    payload=self._queued_data(d.source, d.data, d.doc_type) if self._queued_data else d.data,
                    options={"meta": d.meta, "acl": d.acl},
                )
                for i, d in enumerate(documents)
            )
            submitted = Job.of(job)
        if enqueue:
            self._task(submitted.id)
        return submitted

    def get(self, tenant: str, job_id: str) -> Job:
        """The job with its items."""
        with self._database.reading() as session:
            job = session.scalar(
                select(JobRow)
                .options(selectinload(JobRow.items))
                .where(JobRow.id == job_id, JobRow.tenant == tenant)
            )
            if job is None:
                raise NotFoundError(f"No job '{job_id}'.", code="job_not_found")
            return Job.of(job, with_items=True)

    def recent(self, tenant: str, limit: int = 20) -> list[Job]:
        """The tenant's latest jobs, newest first (without their items)."""
        with self._database.reading() as session:
            rows = session.scalars(
                select(JobRow).where(JobRow.tenant == tenant).order_by(JobRow.created_at.desc()).limit(limit)
            )
            return [Job.of(row) for row in rows]

    def run(self, job_id: str, on_item: ItemCallback | None = None, batch_size: int = BATCH) -> None:
        """Processes the job's pending items in order, `batch_size` documents at a time (a smaller batch
        reports progress more often, a larger one embeds more chunks per model call); safe to run again
        after a crash."""
        with self._database.session() as session:
            job = session.get(JobRow, job_id)
            if job is None:
                log.warning("job_missing", job_id=job_id)
                return
            tenant = job.tenant
            job.status = "running"
            pending = list(
                session.scalars(
                    select(JobItemRow.id)
                    .where(JobItemRow.job_id == job_id, JobItemRow.status == "pending")
                    .order_by(JobItemRow.ordinal)
                )
            )
        with self._heartbeat(job_id):
            for start in range(0, len(pending), batch_size):
                if self._stopping.is_set():
                    self._hand_back(job_id)
                    return
                batch = self._claim(job_id, pending[start : start + batch_size])
                if not batch:
                    continue
                self._set_in_flight(job_id, batch)
                self._run_items(tenant, batch)
                self._set_in_flight(job_id, [])
                if on_item is not None:
                    with self._database.session() as session:
                        for item_id in batch:
                            on_item(JobItem.of(session.get_one(JobItemRow, item_id)))
        self._finish(job_id)

    def _hand_back(self, job_id: str) -> None:
        """Queues the job again for whichever consumer is next (with Redis, another process at once; on
        the embedded tier, this server's next start)."""
        with self._database.session() as session:
            session.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.status == "running")
                .values(status="queued", updated_at=datetime.now(UTC))
            )
        self._task(job_id)
        log.info("job_handed_back", job_id=job_id)

    def _set_in_flight(self, job_id: str, item_ids: list[str]) -> None:
        key = (job_id, threading.get_ident())
        with self._in_flight_lock:
            if item_ids:
                self._in_flight[key] = item_ids
            else:
                self._in_flight.pop(key, None)

    @contextmanager
    def _heartbeat(self, job_id: str) -> Iterator[None]:
        """Beats while the job runs, also through a long batch (a big PDF), so that no other consumer
        takes this job's claims for stale."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(self._stale_after_s / 4):
                try:
                    self._beat(job_id)
                except Exception:  # A missed beat is retried; the job itself goes on.
                    log.warning("job_heartbeat_failed", job_id=job_id, exc_info=True)

        beater = threading.Thread(target=beat, name=f"heartbeat-{job_id}", daemon=True)
        beater.start()
        try:
            yield
        finally:
            done.set()
            beater.join()
            self._set_in_flight(job_id, [])

    def _beat(self, job_id: str) -> None:
        now = datetime.now(UTC)
        with self._in_flight_lock:
            claimed = [item for (job, _), items in self._in_flight.items() if job == job_id for item in items]
        with self._database.session() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(updated_at=now))
            if claimed:
                session.execute(
                    update(JobItemRow)
                    .where(JobItemRow.id.in_(claimed), JobItemRow.status == "processing")
                    .values(claimed_at=now)
                )

    def release_in_flight(self) -> list[str]:
        """For a consumer stopped before its batch finished: its claimed items go back to pending and
        their jobs on the queue, for another consumer now rather than after the stale-claim timeout. An
        item the interrupted batch still stores is stored once: it is then found unchanged."""
        in_flight: dict[str, list[str]] = {}
        with self._in_flight_lock:
            for (job_id, _), items in self._in_flight.items():
                in_flight.setdefault(job_id, []).extend(items)
            self._in_flight.clear()
        for job_id, item_ids in in_flight.items():
            with self._database.session() as session:
                session.execute(
                    update(JobItemRow)
                    .where(JobItemRow.id.in_(item_ids), JobItemRow.status == "processing")
                    .values(status="pending", claimed_at=None)
                )
            self._hand_back(job_id)
        return list(in_flight)

    def _claim(self, job_id: str, item_ids: list[str]) -> list[str]:
        """Marks the items this worker takes (a second worker on the same job skips them) and beats the
        job's heartbeat, which tells other workers this job is alive."""
        now = datetime.now(UTC)
        claimed = []
        with self._database.session() as session:
            for item_id in item_ids:
                taken = session.execute(
                    update(JobItemRow)
                    .where(JobItemRow.id == item_id, JobItemRow.status == "pending")
                    .values(status="processing", claimed_at=now)
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    claimed.append(item_id)
            session.execute(update(JobRow).where(JobRow.id == job_id).values(updated_at=now))
        return claimed

    def _run_items(self, tenant: str, item_ids: list[str]) -> None:
        with self._database.session() as session:
            items = [
                session.get_one(JobItemRow, item_id, options=[undefer(JobItemRow.payload)])
                for item_id in item_ids
            ]
            documents = [
                NewDocument(
                    source=item.source,
                    data=item.payload or b"",
                    doc_type=item.doc_type,
                    meta=item.options.get("meta", {}),
                    acl=item.options.get("acl", []),
                )
                for item in items
            ]

        def done(session: Session, position: int, document_id: str, outcome: str) -> None:
            # In the transaction that stored the document: the item is done exactly when it is stored.
            item = session.get(JobItemRow, item_ids[position])
            if item is not None:
                item.status, item.outcome, item.document_id, item.payload = "done", outcome, document_id, None

        try:
            results = list(self._ingest(tenant, documents, done))
        except Exception as exc:
            # The batch as a whole broke (the model, the database): every item says why, none is lost.
            log.exception("ingest_batch_failed", items=len(item_ids))
            results = [exc] * len(item_ids)
        for item_id, result in zip(item_ids, results, strict=True):
            if isinstance(result, KeelError):
                self._fail_item(item_id, result.message)
            elif isinstance(result, Exception):
                self._fail_item(item_id, f"{type(result).__name__}: {result}")

    def _fail_item(self, item_id: str, reason: str) -> None:
        with self._database.session() as session:
            # Only a claimed item: one that another consumer stored meanwhile (after its claim was
            # released) stays done.
            session.execute(
                update(JobItemRow)
                .where(JobItemRow.id == item_id, JobItemRow.status == "processing")
                .values(status="failed", error=reason, payload=None)
            )

    def _finish(self, job_id: str) -> None:
        with self._database.session() as session:
            job = session.get_one(JobRow, job_id, options=[selectinload(JobRow.items)])
            statuses = [item.status for item in job.items]
            if "pending" in statuses or "processing" in statuses:
                return
            failed = statuses.count("failed")
            job.status = (
                "failed" if failed and failed == len(statuses) else "partial" if failed else "succeeded"
            )
            job.finished_at = datetime.now(UTC)

    def resume_unfinished(self, *, sole_consumer: bool) -> list[str]:
        """Run at start: enqueues every job left queued or running. `sole_consumer` (the embedded tier,
        where this process is the only consumer) also releases every claimed item at once; with other
        consumers about, only stale claims are released (`requeue_stale`)."""
        if sole_consumer:
            with self._database.session() as session:
                session.execute(
                    update(JobItemRow)
                    .where(JobItemRow.status == "processing")
                    .values(status="pending", claimed_at=None)
                )
        else:
            self.requeue_stale()
        with self._database.session() as session:
            job_ids = list(session.scalars(select(JobRow.id).where(JobRow.status.in_(("queued", "running")))))
        for job_id in job_ids:
            self._task(job_id)
        if job_ids:
            log.info("jobs_resumed", count=len(job_ids))
        return job_ids

    def requeue_stale(self, stale_after_s: float | None = None) -> list[str]:
        """A consumer that died (kill -9, a lost host) leaves claimed items and a silent job behind: after
        `stale_after_s` (default: this instance's) without a heartbeat its items go back to pending and
        the job is queued again, for any live consumer. Each item is still stored exactly once: storing
        it marks it done atomically."""
        limit = self._stale_after_s if stale_after_s is None else stale_after_s
        cutoff = datetime.now(UTC) - timedelta(seconds=limit)
        requeued = []
        with self._database.session() as session:
            session.execute(
                update(JobItemRow)
                .where(JobItemRow.status == "processing", JobItemRow.claimed_at < cutoff)
                .values(status="pending", claimed_at=None)
            )
            stale = list(
                session.scalars(
                    select(JobRow.id).where(
                        JobRow.status.in_(("queued", "running")), JobRow.updated_at < cutoff
                    )
                )
            )
            for job_id in stale:
                # Conditional: of several workers noticing at once, one requeues.
                taken = session.execute(
                    update(JobRow)
                    .where(JobRow.id == job_id, JobRow.updated_at < cutoff)
                    .values(updated_at=datetime.now(UTC))
                )
                if taken.rowcount == 1:  # type: ignore[attr-defined]
                    requeued.append(job_id)
        for job_id in requeued:
            self._task(job_id)
        if requeued:
            log.info("stale_jobs_requeued", count=len(requeued))
        return requeued
