"""`keel eval compare` and `keel eval gate` on synthetic runs in a real SQLite file: exit 1 only for a
clear drop, 0 for a run against itself or a drop within the allowance, 2 for a bad allowance."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from keel.cli import app
from keel.config import Settings
from keel.copilot.grounding import GroundingChecker
from keel.evals.datasets import EvalDatasets
from keel.evals.items import DatasetItem
from keel.evals.run_config import RunConfig
from keel.evals.run_types import RunRequest
from keel.evals.runner import EvalRuns
from keel.evals.scoring import Scorer
from keel.evals.targets import Target, TargetOutput
from keel.store.engine import Database
from tests.unit.evals.test_runner import FakeEmbedder


class Answers:
    """Answers each question with the reference, or with a wrong answer for the first `wrong` items."""

    name = "copilot"

    def __init__(self, wrong: int) -> None:
        self.wrong = wrong

    async def run(self, item: DatasetItem, tenant: str) -> TargetOutput:
        number = int(item.question.split()[-1])
        reply = "something else entirely" if number < self.wrong else item.reference_answer or ""
        return TargetOutput(reply=reply, status="answered")


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("KEEL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KEEL_LOG_JSON", "false")
    database = Database(Settings(data_dir=tmp_path).sqlalchemy_url)
    database.migrate()
    questions = [
        DatasetItem(input=f"question {i}", reference_answer=f"the answer is number {i}") for i in range(60)
    ]
    EvalDatasets(database).write("demo", "faq", questions)
    made = {}
    for name, wrong in (("base", 0), ("same", 0), ("worse", 30), ("slightly", 1)):
        target = Answers(wrong)
        scorer = Scorer(FakeEmbedder(), GroundingChecker(FakeEmbedder()))

        def pipeline(
            config: RunConfig, kind: str, target: Target = target, scorer: Scorer = scorer
        ) -> tuple[Target, Scorer]:
            return target, scorer

        evals = EvalRuns(database, EvalDatasets(database), Settings(data_dir=tmp_path), pipeline)
        run = evals.create("demo", RunRequest(dataset="faq"), enqueue=False)
        evals.execute(run.id)
        made[name] = run.id
    database.dispose()
    return made


def gate(baseline: str, candidate: str, *allowances: str) -> tuple[int, str]:
    args = ["eval", "gate", "--baseline", baseline, "--candidate", candidate]
    for allowance in allowances:
        args += ["--max-drop", allowance]
    result = CliRunner().invoke(app, args)
    return result.exit_code, result.output


def test_gate_exit_codes(runs: dict[str, str]) -> None:
    code, output = gate(runs["base"], runs["worse"], "answer_f1=0.05")
    assert code == 1 and "FAIL answer_f1" in output and "gate: failed" in output
    assert gate(runs["base"], runs["same"], "answer_f1=0")[0] == 0
    # One item of sixty got worse: past a zero allowance, but within the noise.
    code, output = gate(runs["base"], runs["slightly"], "answer_f1=0")
    assert code == 0 and "not significant" in output
    assert gate(runs["base"], runs["worse"], "answer_f1=0.9")[0] == 0
    assert gate(runs["base"], runs["worse"], "colour=1")[0] == 2


def test_compare_prints_a_table_and_json(runs: dict[str, str]) -> None:
    table = CliRunner().invoke(app, ["eval", "compare", runs["base"], runs["worse"]])
    assert table.exit_code == 0 and "answer_f1" in table.output and "most changed" in table.output
    as_json = CliRunner().invoke(app, ["eval", "compare", runs["base"], runs["worse"], "--json"])
    found = {m["metric"]: m for m in json.loads(as_json.output)["metrics"]}
    assert found["answer_f1"]["high"] < 0 and found["answer_f1"]["test"] == "wilcoxon"
    shown = CliRunner().invoke(app, ["eval", "show", runs["worse"]])
    assert shown.exit_code == 0 and "succeeded" in shown.output


def test_two_runs_judged_side_by_side(runs: dict[str, str], tmp_path: Path) -> None:
    import asyncio

    from keel.evals.judge import Judge
    from keel.evals.service import judge_pairwise
    from tests.unit.evals.test_judge import ScriptedGateway

    database = Database(Settings(data_dir=tmp_path).sqlalchemy_url)
    evals = EvalRuns(database, EvalDatasets(database), Settings(data_dir=tmp_path))
    judge = Judge(ScriptedGateway(), "judge")  # type: ignore[arg-type]
    result = asyncio.run(judge_pairwise(evals, judge, "demo", runs["base"], runs["worse"]))
    assert result.candidate_wins + result.baseline_wins + result.ties == 60
    assert result.cost_micros == 60 * 250
