"""The MTRAG model judge on the real Qwen2.5-Coder-1.5B file (`make model-large`); skipped without it."""

from __future__ import annotations

import pytest
from bench.mtrag_model_judge import ANSWER_LABELS, GoldTask, ModelJudge, ModelVerdict, load_judge, model_path

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
CONTRADICTING = "Delivery to Germany takes 30 working days and costs 80 euros."


@pytest.fixture(scope="module")
def judge() -> ModelJudge:
    try:
        path = model_path()
    except ModelFileMissing:
        pytest.skip("Qwen2.5-Coder-1.5B is not installed (make model-large)")
    return load_judge(path)[0]


@pytest.fixture(scope="module")
def right(judge: ModelJudge) -> ModelVerdict:
    verdict = judge.judge(TASK, RIGHT)
    assert verdict is not None
    return verdict


def test_the_model_judge_scores_deterministically(judge: ModelJudge, right: ModelVerdict) -> None:
    assert right.answer in ANSWER_LABELS and len(right.scores.supported) == 1
    # Asked again past the in-memory cache: the same scores up to how llama.cpp batched the tokens (the
    # first time the whole prompt at once, now only the part past the prefix the context holds), which
    # moved them by up to about 0.02 when measured.
    again = ModelJudge(judge.scorer, thresholds=judge.thresholds).judge(TASK, RIGHT)
    assert again is not None and not again.cached
    assert again.scores.supported == pytest.approx(right.scores.supported, abs=0.05)
    assert again.scores.key_point == pytest.approx(right.scores.key_point, abs=0.05)


def test_the_model_judge_rejects_a_contradicting_reply(judge: ModelJudge, right: ModelVerdict) -> None:
    wrong = judge.judge(TASK, CONTRADICTING)
    assert wrong is not None and not wrong.correct, wrong
    # Not only rejected: scored below the right reply on its support and on the reference's key point.
    assert min(wrong.scores.supported) < min(right.scores.supported), (wrong.scores, right.scores)
    assert wrong.scores.key_point < right.scores.key_point, (wrong.scores, right.scores)


def test_the_model_judge_accepts_the_right_reply_at_least_in_part(right: ModelVerdict) -> None:
    # Measured: with the thresholds set on the first half of the hand-checked sample, prompt version 2
    # calls hardly any reply correct, this one "partly" (key point 0.842 against 0.853 for "correct":
    # too close to assert either way, as batching moves scores by up to ~0.02;
    # bench/results/copilot_mtrag_model_judge.md).
    assert right.answer in ("correct", "partly"), right
