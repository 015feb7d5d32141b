"""Evaluation runs as queued jobs: one result row per item and trial, claimed, scored and stored one by one.

A run is stored with all its result rows before it is queued. Each row is claimed with a conditional
UPDATE and stored with its scores in one transaction, so after a crash, a Ctrl-C or a stopping consumer
every row is either done (never redone) or pending; a row claimed by a consumer that died goes back to
pending once its claim is older than `evals.stale_after_s`. Any number of consumers may share a run.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from huey import Huey
from opentelemetry.trace import NoOpTracer, Tracer
from sqlalchemy import func, select, update

from keel.config import Settings
from keel.errors import InvalidRequestError, KeelError, NotFoundError
from keel.evals.datasets import EvalDatasets
from keel.evals.items import DatasetItem
from keel.evals.result_rows import Outcome, ResultRows, now
from keel.evals.run_config import RunConfig, resolve
from keel.evals.run_types import ResultRecord, RunRecord, RunRequest
from keel.evals.scoring import Scorer
from keel.evals.summary import ScoredTrial, summarize
from keel.evals.targets import Target
from keel.logs import get_logger
from keel.observe import attributes
from keel.store.channels import EVAL_ITEM_SPAN
from keel.store.engine import Database
from keel.store.eval_models import EvalResult, EvalRun

log = get_logger(__name__)
EVAL_TASK = "keel.eval_run"
MAX_RESULTS = 200_000
# Builds the target and its scorer for a run's configuration (the runtime knows how).
Pipeline = Callable[[RunConfig, str], tuple[Target, Scorer]]
Progress = Callable[[RunRecord], None]
# The registry prompt a copilot run will be served, per tenant ({name, version, label}; None outside it).
ServedPrompt = Callable[[str], dict[str, Any] | None]


class EvalRuns:
    def __init__(
        self,
        database: Database,
        datasets: EvalDatasets,
        settings: Settings,
        pipeline: Pipeline | None = None,
        queue: Huey | None = None,
        tracer: Tracer | None = None,
        served_prompt: ServedPrompt | None = None,
    ) -> None:
        self._database = database
        self._served_prompt = served_prompt
        self._datasets = datasets
        self._settings = settings
        self._pipeline = pipeline
        self._tracer = tracer or NoOpTracer()
        self._task = queue.task(name=EVAL_TASK, context=False)(self.execute) if queue is not None else None
        self._stopping = threading.Event()
        self._rows = ResultRows(database)

    def stop_claiming(self) -> None:
        """Shutdown has begun: items in hand finish, no run here claims another; the rest is handed back."""
        self._stopping.set()

    # -- creating and reading ----------------------------------------------------------------------

    def create(
        self, tenant: str, request: RunRequest, *, created_by: str | None = None, enqueue: bool = True
    ) -> RunRecord:
        """Stores the run and one pending result per item and trial, then queues it (`enqueue=False`:
        the caller runs it, as `keel eval run` does in the foreground)."""
        config = resolve(self._settings, request.config)
        info, items = self._datasets.items(tenant, request.dataset, request.version)
        if not items:
            raise InvalidRequestError(f"Dataset '{info.name}' version {info.version} has no items.")
        if len(items) * request.trials > MAX_RESULTS:
            raise InvalidRequestError(f"At most {MAX_RESULTS} item trials per run.")
        record = config.record()
        if request.target == "copilot" and self._served_prompt is not None:
            # What the label serves as the run starts; each item records what its calls actually used.
            record["prompt"] = self._served_prompt(tenant)
        with self._database.session() as session:
            run = EvalRun(
                tenant=tenant,
                name=request.name,
                dataset_id=info.id,
                dataset_version=request.version or info.version,
                target=request.target,
                trials=request.trials,
                concurrency=request.concurrency or config.evals.concurrency,
                config=record,
                overrides=request.config,
                total=len(items) * request.trials,
                created_by=created_by,
            )
            session.add(run)
            session.flush()
            session.add_all(
                EvalResult(
                    run_id=run.id,
                    tenant=tenant,
                    item_id=stored.id,
                    item_key=stored.item.key or stored.id,
                    ordinal=ordinal,
                    trial=trial,
                )
                for trial in range(request.trials)
                for ordinal, stored in enumerate(items)
            )
            session.flush()
            created = RunRecord.of(run)
        if enqueue and self._task is not None:
            self._task(created.id)
        return created

    def get(self, tenant: str, run_id: str) -> RunRecord:
        with self._database.reading() as session:
            run = session.scalar(select(EvalRun).where(EvalRun.id == run_id, EvalRun.tenant == tenant))
            if run is None:
                raise NotFoundError(f"No evaluation run '{run_id}'.", code="eval_run_not_found")
            return RunRecord.of(run)

    def list_runs(self, tenant: str, limit: int = 50) -> list[RunRecord]:
        with self._database.reading() as session:
            rows = session.scalars(
                select(EvalRun)
                .where(EvalRun.tenant == tenant)
                .order_by(EvalRun.created_at.desc())
                .limit(limit)
            )
            return [RunRecord.of(row) for row in rows]

    def results(self, tenant: str, run_id: str) -> list[ResultRecord]:
        self.get(tenant, run_id)
        with self._database.reading() as session:
            rows = session.scalars(
                select(EvalResult)
                .where(EvalResult.run_id == run_id)
                .order_by(EvalResult.ordinal, EvalResult.trial)
            )
            return [ResultRecord.of(row) for row in rows]

    def scored_trials(self, tenant: str, run_id: str) -> list[ScoredTrial]:
        """The run's finished trials with their items' tags: what summaries and comparisons read."""
        items = self.items_of(self.get(tenant, run_id))
        return [
            ScoredTrial(r.item_key, r.trial, items[r.item_id].tags if r.item_id in items else [], r.scores)
            for r in self.results(tenant, run_id)
            if r.status == "done"
        ]

    def items_of(self, run: RunRecord | EvalRun) -> dict[str, DatasetItem]:
        """The run's items by row id, as the dataset version it ran on holds them."""
        _, stored = self._datasets.items(run.tenant, run.dataset_id, run.dataset_version)
        return {s.id: s.item for s in stored}

    def resume_unfinished(self, *, sole_consumer: bool) -> list[str]:
        """Queues again every run left queued or running (at start). The sole consumer of a queue knows
        every claim is dead and frees them at once; otherwise only stale claims are freed, when run."""
        with self._database.session() as session:
            run_ids = list(
                session.scalars(select(EvalRun.id).where(EvalRun.status.in_(("queued", "running"))))
            )
            if sole_consumer and run_ids:
                session.execute(
                    update(EvalResult)
                    .where(EvalResult.run_id.in_(run_ids), EvalResult.status == "processing")
                    .values(status="pending", claimed_at=None)
                )
        if self._task is not None:
            for run_id in run_ids:
                self._task(run_id)
        return run_ids

    # -- running -----------------------------------------------------------------------------------

    def execute(
        self, run_id: str, on_progress: Progress | None = None, stop: threading.Event | None = None
    ) -> None:
        """Works the run's pending results until none is left (or `stop` / shutdown), then summarises it.
        Safe to call again after any interruption, from any process."""
        with self._database.session() as session:
            run = session.get(EvalRun, run_id)
            if run is None:
                log.warning("eval_run_missing", run_id=run_id)
                return
            if run.status in ("succeeded", "partial", "failed"):
                return
            run.status = "running"
            run.started_at = run.started_at or now()
            run.heartbeat_at = now()
        config = RunConfig.from_record(run.config)
        self._rows.reclaim_stale(run_id, config.evals.stale_after_s)
        if self._pipeline is None:
            raise InvalidRequestError("This process reads runs only; it cannot work one.")
        target, scorer = self._pipeline(config, run.target)
        items = self.items_of(run)
        halt = stop or threading.Event()
        asyncio.run(self._work(run, items, target, scorer, config, halt, on_progress))
        if self._stopping.is_set() and self._task is not None:
            # Handed back: another consumer (or this one, restarted) carries on with the pending rows.
            self._task(run_id)
            return
        self._finish(run_id, config)

    async def _work(
        self,
        run: EvalRun,
        items: dict[str, DatasetItem],
        target: Target,
        scorer: Scorer,
        config: RunConfig,
        halt: threading.Event,
        on_progress: Progress | None,
    ) -> None:
        with self._database.reading() as session:
            pending = list(
                session.execute(
                    select(EvalResult.id, EvalResult.item_id, EvalResult.item_key, EvalResult.trial)
                    .where(EvalResult.run_id == run.id, EvalResult.status == "pending")
                    .order_by(EvalResult.trial, EvalResult.ordinal)
                )
            )
        queue = iter(pending)
        in_flight: set[str] = set()
        beat = asyncio.create_task(self._heartbeat(run.id, in_flight, config.evals.stale_after_s / 4))

        async def worker() -> None:
            for result_id, item_id, item_key, trial in queue:
                if halt.is_set() or self._stopping.is_set():
                    return
                if not await asyncio.to_thread(self._rows.claim, result_id):
                    continue
                in_flight.add(result_id)
                try:
                    await self._one(run, result_id, items[item_id], item_key, trial, target, scorer)
                finally:
                    in_flight.discard(result_id)
                if on_progress is not None:
                    on_progress(await asyncio.to_thread(self.get, run.tenant, run.id))

        try:
            await asyncio.gather(*(worker() for _ in range(max(1, run.concurrency))))
        finally:
            beat.cancel()
            # Interrupted (Ctrl-C cancels the workers): what this process held goes back at once.
            await asyncio.to_thread(self._rows.release, set(in_flight))

    async def _heartbeat(self, run_id: str, in_flight: set[str], every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            await asyncio.to_thread(self._rows.beat, run_id, set(in_flight))

    async def _one(
        self,
        run: EvalRun,
        result_id: str,
        item: DatasetItem,
        item_key: str,
        trial: int,
        target: Target,
        scorer: Scorer,
    ) -> None:
        with self._tracer.start_as_current_span(EVAL_ITEM_SPAN) as span:
            # The run's tenant owns the trace: it is listed (channel `eval`) and opened as the tenant's.
            span.set_attribute(attributes.TENANT, run.tenant)
            span.set_attribute("keel.eval.run_id", run.id)
            span.set_attribute("keel.eval.item", item_key)
            span.set_attribute("keel.eval.trial", trial)
            context = span.get_span_context()
            span_trace = f"{context.trace_id:032x}" if context.is_valid else None
            started = time.perf_counter()
            try:
                output = await target.run(item, run.tenant)
                latency = time.perf_counter() - started
                scored = await scorer.score(
                    run.tenant, item, output, latency, retrieves=target.name != "chat"
                )
            except (KeelError, ValueError, RuntimeError, OSError) as exc:
                # A failed item is recorded with its reason and left out of the aggregates.
                log.warning("eval_item_failed", run_id=run.id, item=item_key, error=str(exc)[:200])
                await asyncio.to_thread(
                    self._rows.store_failure, run.id, result_id, f"{type(exc).__name__}: {exc}", span_trace
                )
                return
        outcome = Outcome(
            output={
                "reply": output.reply,
                "status": output.status,
                "cited": [list(c) for c in output.cited],
                "retrieved": [list(r) for r in output.retrieved[:20]],
                "escalation_reasons": output.escalation_reasons,
                "prompt_versions": output.prompt_versions,
                "prompts": output.prompts,
            },
            scores=scored.scores,
            trace_id=output.trace_id or span_trace,
            latency_s=latency,
            cost_micros=output.cost_micros,
            judge_cost_micros=scored.judge_cost_micros,
        )
        await asyncio.to_thread(self._rows.store, run.id, result_id, outcome)

    def _finish(self, run_id: str, config: RunConfig) -> None:
        """When no row is left to work: the summary, and the final status (set once, by one consumer)."""
        with self._database.reading() as session:
            open_rows = session.scalar(
                select(func.count()).where(
                    EvalResult.run_id == run_id, EvalResult.status.in_(("pending", "processing"))
                )
            )
        if open_rows:
            return
        run = self._database_run(run_id)
        trials = self.scored_trials(run.tenant, run_id)
        summary = summarize(
            trials, resamples=config.evals.bootstrap_resamples, level=config.evals.confidence_level
        )
        # The prompt versions the model calls actually used (a registry label may move during a run).
        summary["prompt_versions"] = sorted(
            {v for r in self.results(run.tenant, run_id) for v in r.output.get("prompt_versions", [])}
        )
        status = "failed" if not trials else ("partial" if run.failed else "succeeded")
        with self._database.session() as session:
            session.execute(
                update(EvalRun)
                .where(EvalRun.id == run_id, EvalRun.status == "running")
                .values(status=status, summary=summary, finished_at=now())
            )

    def _database_run(self, run_id: str) -> EvalRun:
        with self._database.reading() as session:
            return session.get_one(EvalRun, run_id)
