"""The MTRAG model judge on the real Qwen2.5-Coder-1.5B file (`make model-large`); skipped without it."""

from __future__ import annotations

import pytest
from bench.mtrag_model_judge import ANSWER_LABELS, GoldTask, ModelJudge, load_judge, model_path

from keel.model_files import ModelFileMissing

pytest.importorskip("llama_cpp")

TASK = GoldTask(
    task_id="delivery<::>1",
    question="How long does delivery to Germany take?",
    golds=["Delivery to Germany takes 3 to 5 working days."],
    passages=[
        "Shipping times\nOrders ship within one working day. Germany, France and Austria: 3-5 working days. "
        "United Kingdom: 2-3 working days. Express shipping is not offered to islands."
    ],
    answerability="ANSWERABLE",
)
RIGHT = "Delivery to Germany takes 3-5 working days."


@pytest.fixture(scope="module")
def judge() -> ModelJudge:
    try:
        path = model_path()
    except ModelFileMissing:
        pytest.skip("Qwen2.5-Coder-1.5B is not installed (make model-large)")
    return load_judge(path)[0]


def test_the_model_judge_gives_grammar_labels_deterministically(judge: ModelJudge) -> None:
    right = judge.judge(TASK, RIGHT)
    assert right is not None and right.answer in ANSWER_LABELS
    assert right.correct, right
    # Asked again past the in-memory cache, at temperature 0: the same verdict.
    again = ModelJudge(judge.model, judge.grammar).judge(TASK, RIGHT)
    assert again is not None
    assert (again.answer, again.supported, again.cached) == (right.answer, right.supported, False)


@pytest.mark.xfail(
    strict=True,
    reason="measured: prompt version 1 calls a reply contradicting the reference 'correct' and 'supported' "
    "(bench/results/copilot_mtrag_model_judge.md); strict, so a prompt that fixes it must drop this mark",
)
def test_the_model_judge_rejects_a_contradicting_reply(judge: ModelJudge) -> None:
    wrong = judge.judge(TASK, "Delivery to Germany takes 30 working days and costs 80 euros.")
    assert wrong is not None and not wrong.correct, wrong
