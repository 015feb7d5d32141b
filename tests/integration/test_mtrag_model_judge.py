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


def test_the_model_judge_tells_a_right_reply_from_a_contradicting_one() -> None:
    try:
        path = model_path()
    except ModelFileMissing:
        pytest.skip("Qwen2.5-Coder-1.5B is not installed (make model-large)")
    judge, _load_s = load_judge(path)
    right = judge.judge(TASK, "Delivery to Germany takes 3-5 working days.")
    wrong = judge.judge(TASK, "Delivery to Germany takes 30 working days and costs 80 euros.")
    assert right.answer in ANSWER_LABELS and wrong.answer in ANSWER_LABELS
    assert right.correct, right
    assert not wrong.correct, wrong
    # Deterministic at temperature 0: asked again (past the in-memory cache), the same verdict.
    again = ModelJudge(judge.model, judge.grammar).judge(TASK, "Delivery to Germany takes 3-5 working days.")
    assert (again.answer, again.supported, again.cached) == (right.answer, right.supported, False)
