"""The MTRAG model judge's prompts, passage selection, score reading, labels, tuning and cache, with a double
for the model only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from bench.mtrag_model_judge import (
    ASK_ANSWERS,
    ASK_CONTRADICTS,
    ASK_KEY_POINT,
    ASK_SUPPORTED,
    MAX_SENTENCES,
    GoldTask,
    LlamaScorer,
    ModelJudge,
    ScoreCache,
    Scores,
    Thresholds,
    cache_key,
    chat_prompt,
    label,
    questions,
    read_tasks,
    reply_sentences,
    select_passages,
)
from bench.mtrag_model_judge_run import (
    agreement,
    comparison_line,
    judge_run,
    kappa,
    label_kappa,
    summarise,
    tune,
)


def words(text: str) -> int:
    return len(text.split())


class FakeScorer:
    """Stands in for the model: one token per word, and P(yes) from a rule on the prompt."""

    def __init__(self, rule: Callable[[str], float] = lambda prompt: 0.9) -> None:
        self.rule = rule
        self.prompts: list[str] = []

    def count(self, text: str) -> int:
        return words(text)

    def yes_score(self, prompt: str) -> tuple[float, int]:
        self.prompts.append(prompt)
        return self.rule(prompt), words(prompt)


TASK = GoldTask(
    task_id="t<::>1",
    question="How long does delivery to Germany take?",
    golds=["Delivery to Germany takes 3 to 5 working days."],
    passages=["Shipping times.\nGermany, France and Austria: 3-5 working days.\nUK: 2 days."],
    answerability="ANSWERABLE",
)
T = Thresholds(supported=0.5, contradicts=0.6, correct=0.7, partly=0.4)


def scores(supported: list[float], contradicts: list[float], key_point: float, answers: float) -> Scores:
    return Scores(supported, contradicts, key_point, answers, prompt_tokens=10, seconds=1.0)


def test_every_prompt_shares_the_context_and_asks_one_question() -> None:
    sentences, prompts = questions(TASK, "It takes 3-5 working days. Orders ship fast.", words)
    assert sentences == ["It takes 3-5 working days.", "Orders ship fast."]
    assert len(prompts) == 2 * 2 + 2
    shared = prompts[0][: prompts[0].index("Sentence of the reply:")]
    for part in (
        TASK.question,
        TASK.golds[0],
        "Germany, France and Austria: 3-5 working days.",
        '"""It takes',
    ):
        assert part in shared
    assert all(p.startswith(shared) for p in prompts)  # one prefix: evaluated once per reply
    asked = [ASK_SUPPORTED, ASK_CONTRADICTS, ASK_SUPPORTED, ASK_CONTRADICTS, ASK_KEY_POINT, ASK_ANSWERS]
    for prompt, question in zip(prompts, asked, strict=True):
        assert question in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert '"Orders ship fast."' in prompts[2] and '"Orders ship fast."' not in prompts[1]
    assert "not answerable" not in shared


def test_an_unanswerable_task_says_so() -> None:
    task = GoldTask("u<::>2", "Who won?", ["I don't know."], [], "UNANSWERABLE")
    _sentences, prompts = questions(task, "Team A won.", words)
    assert "marked this question as not answerable" in prompts[0]
    assert "(none bear on the reply)" in prompts[0]


def test_the_chat_prompt_is_the_qwen_template_with_the_assistant_turn_open() -> None:
    prompt = chat_prompt("CONTEXT", "Is it so?")
    assert prompt.startswith("<|im_start|>system\n")
    assert prompt.endswith(
        "<|im_start|>user\nCONTEXT\n\nIs it so? Answer yes or no.<|im_end|>\n<|im_start|>assistant\n"
    )


def test_long_replies_are_asked_about_in_at_most_max_sentences() -> None:
    reply = " ".join(f"Sentence {i} is here." for i in range(12))
    found = reply_sentences(reply)
    assert len(found) == MAX_SENTENCES
    assert found[-1].startswith(f"Sentence {MAX_SENTENCES - 1} ") and found[-1].endswith(
        "Sentence 11 is here."
    )


def test_passage_selection_gives_each_reply_sentence_its_evidence_within_the_budget() -> None:
    filler = [f"Filler sentence number {i} about parks and trails." for i in range(200)]
    passage = " ".join(filler[:100]) + " Germany deliveries take 3-5 working days. " + " ".join(filler[100:])
    other = "Zebras live in Kenya. Lions too."
    focuses = ["Delivery to Germany takes 3-5 working days.", "Zebras live in Kenya."]
    shown = select_passages([passage, other], focuses, 20, words)
    assert shown == ["... Germany deliveries take 3-5 working days. ...", "Zebras live in Kenya. ..."]
    assert sum(words(s) for s in shown) <= 20 + 4
    assert select_passages(["a b c."], ["x"], 10, words) == []  # nothing shares a word: nothing shown
    assert select_passages(["zebra one. filler.", "zebra two."], ["zebra"], 10, words) == [
        "zebra one. ...",
        "zebra two.",
    ]


def test_scores_become_labels() -> None:
    assert label(scores([0.9], [0.7], 0.9, 0.9), T).answer == "wrong"
    assert label(scores([0.9], [0.1], 0.8, 0.2), T).answer == "correct"
    assert label(scores([0.9], [0.1], 0.5, 0.2), T).answer == "partly"  # the key point half there
    assert label(scores([0.9], [0.1], 0.2, 0.5), T).answer == "partly"  # answers, not the reference's way
    assert label(scores([0.9], [0.1], 0.2, 0.3), T).answer == "not answering"
    right = label(scores([0.9, 0.6], [0.1, 0.1], 0.9, 0.9), T)
    assert right.supported and right.correct
    unsupported = label(scores([0.9, 0.4], [0.1, 0.1], 0.9, 0.9), T)
    assert unsupported.answer == "correct" and not unsupported.supported and not unsupported.correct
    assert not label(scores([], [], 0.9, 0.9), T).supported  # no sentence: nothing supported


def test_a_reply_is_scored_from_its_questions_and_cached(tmp_path: Path) -> None:
    def rule(prompt: str) -> float:
        if ASK_CONTRADICTS in prompt:
            return 0.2
        if ASK_SUPPORTED in prompt:
            return 0.8 if "3-5" in prompt.split("Sentence of the reply:")[1] else 0.3
        return 0.75 if ASK_KEY_POINT in prompt else 0.6

    cache_file = tmp_path / "cache.json"
    scorer = FakeScorer(rule)
    judge = ModelJudge(scorer, ScoreCache(cache_file), T)
    verdict = judge.judge(TASK, "It takes 3-5 working days. Trucks are green.")
    assert verdict is not None
    assert verdict.scores.supported == [0.8, 0.3] and verdict.scores.contradicts == [0.2, 0.2]
    assert (verdict.scores.key_point, verdict.scores.answers) == (0.75, 0.6)
    assert (verdict.answer, verdict.supported, verdict.cached) == ("correct", False, False)
    assert verdict.prompt_tokens == sum(words(p) for p in scorer.prompts) and len(scorer.prompts) == 6

    stored = json.loads(cache_file.read_text())[
        cache_key(TASK.task_id, "It takes 3-5 working days. Trucks are green.")
    ]
    assert stored["prompt_version"] == "2" and stored["task_id"] == TASK.task_id and "load_1m" in stored

    silent = FakeScorer()
    again = ModelJudge(silent, ScoreCache(cache_file), T).judge(
        TASK, "It takes 3-5 working days. Trucks are green."
    )
    assert again is not None and again.cached and again.scores.supported == [0.8, 0.3]
    assert silent.prompts == []  # from the cache, nothing asked
    # The same reply to another task, or another reply, is asked again.
    ModelJudge(silent, ScoreCache(cache_file), T).judge(TASK, "Two days.")
    assert silent.prompts


def test_the_cache_key_holds_the_prompt_version_task_and_reply() -> None:
    keys = {cache_key("t<::>1", "r"), cache_key("t<::>2", "r"), cache_key("t<::>1", "r2")}
    assert len(keys) == 3


def test_past_the_deadline_only_cached_scores_are_used() -> None:
    judge = ModelJudge(FakeScorer(), thresholds=T)
    assert judge.judge(TASK, "Two days.") is not None
    judge.deadline = 0.0  # long past
    assert judge.judge(TASK, "Two days.") is not None  # cached
    assert judge.judge(TASK, "Ten days.") is None
    assert len(judge.used) == 1


class FakeLlama:
    """The parts of llama_cpp.Llama that LlamaScorer uses: one token per character, logits by a rule."""

    vocab: ClassVar[dict[str, int]] = {"yes": 1, "Yes": 2, " yes": 3, "no": 4, "No": 5, " no": 6}

    def __init__(self, logits: dict[int, float]) -> None:
        self.logits = logits
        self.input_ids: list[int] = []
        self.n_tokens = 0
        self.evaluated: list[list[int]] = []

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        word = text.decode()
        if word in self.vocab:
            return [self.vocab[word]]
        return [100 + ord(c) for c in word]

    def eval(self, tokens: list[int]) -> None:
        self.evaluated.append(tokens)
        self.input_ids = self.input_ids[: self.n_tokens] + tokens
        self.n_tokens = len(self.input_ids)

    def read_logits(self, ids: list[int]) -> list[float]:
        return [self.logits.get(i, 0.0) for i in ids]


def test_the_llama_scorer_reads_yes_over_no_and_reuses_the_shared_prefix() -> None:
    import math

    llm = FakeLlama({1: 2.0, 2: 1.0, 4: 1.0})
    scorer = LlamaScorer(llm, llm.read_logits)
    assert scorer.yes_ids == [1, 2, 3] and scorer.no_ids == [4, 5, 6]
    score, evaluated = scorer.yes_score("CONTEXT one")
    yes, no = math.exp(2) + math.exp(1) + 1, math.exp(1) + 2
    assert score == pytest.approx(yes / (yes + no)) and evaluated == len("CONTEXT one")
    _score, evaluated = scorer.yes_score("CONTEXT two")
    assert evaluated == len("two") and llm.evaluated[-1] == [100 + ord(c) for c in "two"]
    _score, evaluated = scorer.yes_score("CONTEXT two")  # the same prompt: its last token again
    assert evaluated == 1


def test_thresholds_are_tuned_on_the_rows_given_and_label_them() -> None:
    rows = [
        {"hand": "correct", "scores": scores([0.9], [0.1], 0.9, 0.9), "lexical_correct": True},
        {"hand": "correct", "scores": scores([0.8], [0.2], 0.8, 0.7), "lexical_correct": False},
        {"hand": "partly", "scores": scores([0.9], [0.1], 0.5, 0.8), "lexical_correct": True},
        {"hand": "partly", "scores": scores([0.7], [0.3], 0.4, 0.6), "lexical_correct": False},
        {"hand": "not answering", "scores": scores([0.9], [0.1], 0.1, 0.2), "lexical_correct": False},
    ]
    for row in rows:
        row.update(task_id="t", half="first", lexical_supported=True)
    thresholds, fit = tune(rows)
    assert fit["same_label"] == 5 and fit["rows"] == 5
    assert 0.5 < thresholds.correct < 0.8 and 0.2 < thresholds.partly < 0.6
    assert thresholds.contradicts > 0.3  # nothing the hand called wrong: above every contradiction score
    result = agreement(rows, thresholds)
    assert result["exact"] == 5 and result["kappa_4_labels"] == 1.0
    assert result["confusion"]["partly"] == {"correct": 0, "partly": 2, "not answering": 0, "wrong": 0}
    assert result["model_correct_vs_hand_correct"]["kappa"] == 1.0
    assert result["lexical_correct_vs_hand_correct"]["agree"] == 3
    line = comparison_line(result)
    assert "kappa 1.00 for the model judge" in line and "accuracy 5 of 5" in line


def test_a_run_is_judged_per_half_on_answered_replies_only() -> None:
    other = GoldTask("t<::>9", "Q?", ["A."], ["A."], "ANSWERABLE")
    result: dict[str, Any] = {
        "halves": {"first": {}, "second": {}},
        "all": {},
        "examples": [
            {"task_id": TASK.task_id, "status": "answered", "reply": "r1.", "half": "first"},
            {"task_id": other.task_id, "status": "escalated", "reply": "r2.", "half": "first"},
            {"task_id": other.task_id, "status": "answered", "reply": "r3.", "half": "second"},
        ],
    }

    def rule(prompt: str) -> float:
        wrong = '"""r3.' in prompt
        if ASK_CONTRADICTS in prompt:
            return 0.9 if wrong else 0.1
        return 0.1 if wrong else 0.9

    judge_run(result, {t.task_id: t for t in (TASK, other)}, ModelJudge(FakeScorer(rule), thresholds=T))
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
    assert label_kappa([("a", "a"), ("b", "b"), ("c", "c")]) == 1.0
    assert label_kappa([("a", "a"), ("a", "b"), ("b", "b"), ("b", "a")]) == 0.0


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
