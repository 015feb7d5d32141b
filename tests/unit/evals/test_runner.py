"""Runs over a real SQLite file with a fake target: resumed runs never rescore, failures are counted,
stale claims go back to pending."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from sqlalchemy import update

from keel.config import Settings
from keel.copilot.grounding import GroundingChecker
from keel.errors import InvalidRequestError, UpstreamError
from keel.evals.datasets import EvalDatasets
from keel.evals.items import DatasetItem
from keel.evals.run_config import RunConfig
from keel.evals.run_types import RunRequest
from keel.evals.runner import EvalRuns
from keel.evals.scoring import Scorer
from keel.evals.targets import Target, TargetOutput
from keel.store.engine import Database
from keel.store.eval_models import EvalResult, EvalRun


class FakeEmbedder:
    is_ready = True
    dimensions = 2
    model_id = "fake"

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return np.array([[1.0, 0.0] for _ in texts], dtype=np.float32)


class FakeTarget:
    name = "copilot"

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: Counter[str] = Counter()
        self.fail_on = fail_on

    async def run(self, item: DatasetItem, tenant: str) -> TargetOutput:
        self.calls[item.question] += 1
        if item.question == self.fail_on:
            raise UpstreamError("the model timed out")
        return TargetOutput(
            reply=item.reference_answer or "",
            status="answered",
            retrieved=[(s, "doc") for s in item.expected_sources],
            cited=[(s, "doc") for s in item.expected_sources],
        )


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(f"sqlite:///{tmp_path / 'evals.db'}")
    database.migrate()
    EvalDatasets(database).write(
        "acme",
        "faq",
        [
            DatasetItem(input=f"question {i}", reference_answer=f"answer {i}", expected_sources=[f"s{i}.md"])
            for i in range(5)
        ],
    )
    return database


def make_runs(database: Database, target: Target) -> EvalRuns:
    scorer = Scorer(FakeEmbedder(), GroundingChecker(FakeEmbedder()))

    def pipeline(config: RunConfig, name: str) -> tuple[Target, Scorer]:
        return target, scorer

    return EvalRuns(database, EvalDatasets(database), Settings(), pipeline)


def test_an_interrupted_run_resumes_without_rescoring(database: Database) -> None:
    target = FakeTarget()
    runs = make_runs(database, target)
    run = runs.create("acme", RunRequest(dataset="faq", trials=2, concurrency=1), enqueue=False)
    stop = threading.Event()
    seen: list[int] = []

    def progress(state: EvalRun) -> None:
        seen.append(state.done)
        if state.done == 3:
            stop.set()

    runs.execute(run.id, on_progress=progress, stop=stop)
    halfway = runs.get("acme", run.id)
    assert (halfway.status, halfway.done) == ("running", 3) and halfway.summary == {}
    runs.execute(run.id)
    finished = runs.get("acme", run.id)
    assert (finished.status, finished.done, finished.total) == ("succeeded", 10, 10)
    # Every item asked exactly once per trial over both executions.
    assert target.calls == Counter({f"question {i}": 2 for i in range(5)})
    assert seen == [1, 2, 3]
    summary = finished.summary["metrics"]
    assert summary["answer_f1"]["value"] == 1.0 and summary["recall@5"]["value"] == 1.0
    assert summary["answer_f1"]["per_trial"] == [1.0, 1.0]
    # A finished run executed again does nothing.
    runs.execute(run.id)
    assert sum(target.calls.values()) == 10


def test_a_failing_item_is_recorded_and_the_run_is_partial(database: Database) -> None:
    target = FakeTarget(fail_on="question 2")
    runs = make_runs(database, target)
    run = runs.create("acme", RunRequest(dataset="faq", concurrency=2), enqueue=False)
    runs.execute(run.id)
    finished = runs.get("acme", run.id)
    assert (finished.status, finished.done, finished.failed) == ("partial", 4, 1)
    failed = [r for r in runs.results("acme", run.id) if r.status == "failed"]
    assert len(failed) == 1 and "timed out" in (failed[0].error or "")
    assert finished.summary["metrics"]["answer_f1"]["n"] == 4


def test_a_stale_claim_is_worked_again(database: Database) -> None:
    target = FakeTarget()
    runs = make_runs(database, target)
    run = runs.create("acme", RunRequest(dataset="faq"), enqueue=False)
    first = runs.results("acme", run.id)[0]
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    with database.session() as session:
        # A consumer claimed the first row and died.
        session.execute(
            update(EvalResult)
            .where(EvalResult.id == first.id)
            .values(status="processing", claimed_at=long_ago)
        )
    runs.execute(run.id)
    assert runs.get("acme", run.id).status == "succeeded"
    assert target.calls["question 0"] == 1


def test_run_config_overrides_and_refusals(database: Database) -> None:
    runs = make_runs(database, FakeTarget())
    run = runs.create(
        "acme",
        RunRequest(dataset="faq", config={"knowledge": {"retrieval": {"candidates": 1}}}),
        enqueue=False,
    )
    assert (
        run.config["retrieval"]["candidates"] == 1
        and run.overrides["knowledge"]["retrieval"]["candidates"] == 1
    )
    assert run.config["model_alias"] and run.config["copilot"]["sources"] >= 1
    with pytest.raises(InvalidRequestError, match="override only"):
        runs.create("acme", RunRequest(dataset="faq", config={"chat": {"n_ctx": 1}}), enqueue=False)
    with pytest.raises(InvalidRequestError, match="candidates"):
        runs.create(
            "acme",
            RunRequest(dataset="faq", config={"knowledge": {"retrieval": {"candidates": 0}}}),
            enqueue=False,
        )
