"""The MTRAG model judge's prompt, trimming, label reading and cache, with a double for the model only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from bench.mtrag_model_judge import (
    GoldTask,
    ModelJudge,
    VerdictCache,
    build_messages,
    parse_output,
    read_tasks,
    trim_passages,
)
from bench.mtrag_model_judge_run import judge_run, kappa, summarise


class FakeModel:
    """Stands in for llama_cpp.Llama: one token per word, and a fixed completion per call."""

    def __init__(self, *outputs: str) -> None:
        self.outputs = list(outputs)
        self.calls: list[tuple[list[dict[str, str]], dict[str, Any]]] = []

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return list(range(len(text.split()) + int(add_bos)))

    def create_chat_completion(self, messages: Any, **options: Any) -> Any:
        self.calls.append((messages, options))
        prompt = sum(len(self.tokenize(m["content"].encode(), add_bos=False)) for m in messages)
        return {
            "choices": [{"message": {"content": self.outputs.pop(0)}}],
            "usage": {"prompt_tokens": prompt},
        }


TASK = GoldTask(
    task_id="t<::>1",
    question="How long does delivery to Germany take?",
    golds=["Delivery to Germany takes 3 to 5 working days."],
    passages=["Shipping times.\nGermany, France and Austria: 3-5 working days.\nUK: 2 days."],
    answerability="ANSWERABLE",
)


def test_the_prompt_holds_question_gold_passages_and_reply() -> None:
    messages = build_messages(FakeModel(), TASK, "It takes 3-5 working days.")
    assert [m["role"] for m in messages] == ["system", "user"]
    user = messages[1]["content"]
    for part in (
        TASK.question,
        TASK.golds[0],
        "[1] Shipping times. Germany, France",
        '"""It takes 3-5 working days."""',
    ):
        assert part in user
    assert "answer: correct, partly, not answering or wrong" in user
    assert "not answerable" not in user


def test_an_unanswerable_task_says_so_and_shows_no_passages() -> None:
    task = GoldTask("u<::>2", "Who won?", ["I don't know."], [], "UNANSWERABLE")
    user = build_messages(FakeModel(), task, "Team A won.")[1]["content"]
    assert "marked this question as not answerable" in user
    assert "(no reference passages)" in user


def test_passages_that_do_not_fit_keep_the_lines_nearest_the_reply() -> None:
    filler = [f"Filler sentence number {i} about parks and trails." for i in range(200)]
    passage = " ".join(filler[:100]) + " Germany deliveries take 3-5 working days. " + " ".join(filler[100:])
    task = GoldTask("t<::>3", TASK.question, TASK.golds, [passage], "ANSWERABLE")
    model = FakeModel()
    messages = build_messages(model, task, "Delivery to Germany takes 3-5 working days.", n_ctx=400)
    user = messages[1]["content"]
    assert "Germany deliveries take 3-5 working days." in user
    assert "..." in user
    total = sum(len(model.tokenize(m["content"].encode(), add_bos=False)) for m in messages)
    assert total <= 400


def test_trimming_keeps_whole_passages_that_fit_and_passage_order() -> None:
    def count(text: str) -> int:
        return len(text.split())

    assert trim_passages(["a b  c", "d e"], "x", 10, count) == ["a b c", "d e"]
    kept = trim_passages(["zebra one. filler here now.", "zebra two."], "zebra", 6, count)
    assert kept == ["zebra one. ...", "zebra two."]  # the left-out text is marked


def test_labels_are_read_only_in_the_grammar_form() -> None:
    assert parse_output("answer: not answering\nsupported: yes") == ("not answering", True)
    assert parse_output("answer: wrong\nsupported: no") == ("wrong", False)
    for bad in ("answer: maybe\nsupported: yes", "The reply is correct.", "answer: correct"):
        with pytest.raises(ValueError):
            parse_output(bad)


def test_a_verdict_is_asked_at_temperature_zero_with_the_grammar_and_cached(tmp_path: Path) -> None:
    cache_file = tmp_path / "cache.json"
    model = FakeModel("answer: partly\nsupported: yes")
    judge = ModelJudge(model, grammar="GRAMMAR", cache=VerdictCache(cache_file))
    verdict = judge.judge(TASK, "3-5 working days.")
    assert verdict is not None
    assert (verdict.answer, verdict.supported, verdict.correct, verdict.cached) == (
        "partly",
        True,
        False,
        False,
    )
    assert model.calls[0][1]["temperature"] == 0.0 and model.calls[0][1]["grammar"] == "GRAMMAR"

    again = ModelJudge(FakeModel(), cache=VerdictCache(cache_file)).judge(TASK, "3-5 working days.")
    assert again is not None
    assert (again.answer, again.supported, again.cached) == ("partly", True, True)
    # Another reply to the same task is not the cached one: the double has no output left and fails.
    with pytest.raises(IndexError):
        ModelJudge(FakeModel(), cache=VerdictCache(cache_file)).judge(TASK, "Two days.")


def test_past_the_deadline_only_cached_verdicts_are_given() -> None:
    judge = ModelJudge(FakeModel("answer: wrong\nsupported: no"))
    assert judge.judge(TASK, "Two days.") is not None
    judge.deadline = 0.0  # long past
    assert judge.judge(TASK, "Two days.") is not None  # cached
    assert judge.judge(TASK, "Ten days.") is None
    assert len(judge.used) == 1


def test_a_run_is_judged_per_half_on_answered_replies_only() -> None:
    other = GoldTask("t<::>9", "Q?", ["A."], ["A."], "ANSWERABLE")
    result: dict[str, Any] = {
        "halves": {"first": {}, "second": {}},
        "all": {},
        "examples": [
            {"task_id": TASK.task_id, "status": "answered", "reply": "r1", "half": "first"},
            {"task_id": other.task_id, "status": "escalated", "reply": "r2", "half": "first"},
            {"task_id": other.task_id, "status": "answered", "reply": "r3", "half": "second"},
        ],
    }
    model = FakeModel("answer: correct\nsupported: yes", "answer: wrong\nsupported: no")
    judge_run(result, {t.task_id: t for t in (TASK, other)}, ModelJudge(model))
    assert result["halves"]["first"]["model_judge"]["correct_and_supported"] == 1
    assert result["halves"]["second"]["model_judge"] == {
        "answered": 1,
        "judged": 1,
        "correct": 0,
        "partly": 0,
        "not_answering": 0,
        "wrong": 1,
        "unsupported": 1,
        "correct_and_supported": 0,
    }
    assert result["all"]["model_judge"]["answered"] == 2
    assert "model_judge" not in result["examples"][1]


def test_summary_and_kappa() -> None:
    assert summarise([])["answered"] == 0
    assert kappa([(True, True), (False, False)]) == 1.0
    assert kappa([(True, False), (False, True)]) == -1.0
    assert kappa([(True, True), (True, True)]) is None


def test_tasks_are_read_from_the_data_set(tmp_path: Path) -> None:
    row = {
        "task_id": "x<::>2",
        "input": [
            {"speaker": "user", "text": "first"},
            {"speaker": "agent", "text": "a"},
            {"speaker": "user", "text": " last? "},
        ],
        "targets": [{"text": " gold "}],
        "contexts": [{"text": "passage", "document_id": "d"}],
        "answerability": ["PARTIAL"],
    }
    path = tmp_path / "tasks.jsonl"
    path.write_text(json.dumps(row) + "\n")
    assert read_tasks(path)["x<::>2"] == GoldTask("x<::>2", "last?", ["gold"], ["passage"], "PARTIAL")
