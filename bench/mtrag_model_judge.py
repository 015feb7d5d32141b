"""A model judge for the MTRAG bench: the larger local model (Qwen2.5-Coder-1.5B-Instruct, `make model-large`)
grades each answered reply against the data set's own gold answers and gold reference passages.

It reads nothing of Keel's retrieval, embeddings or grounding checks: only the question, the gold answer(s),
the task's reference passages (the sentences nearest the reply and the gold answer) and the reply.

Instead of one four-way verdict, the model answers small yes/no questions, and no text is sampled: the
judge reads the model's next-token probabilities after each question and keeps P(yes) / (P(yes) + P(no)).

- per reply sentence: is it supported by the reference passages? does it contradict the reference answer?
- per reply: does it give the key point of the reference answer? does it answer the question asked?

All questions about one reply share one prompt prefix (the question, the reference answer, the passages and
the reply), so llama.cpp evaluates that prefix once per reply and each question costs only its own tokens.
The scores are cached in a JSON file by a digest of the prompt version, the task and the reply; the labels
(correct / partly / not answering / wrong, and supported yes / no) are derived from the scores with
`THRESHOLDS`, set on the first half of the hand-checked sample only (`bench/mtrag_model_judge_run.py --tune`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

ANSWER_LABELS = ("correct", "partly", "not answering", "wrong")
# Bump when a prompt or the passage selection changes: cached scores of another version are not reused.
PROMPT_VERSION = "2"
N_CTX = 2048
N_THREADS = 2
PASSAGE_TOKENS = 320  # the reference passage sentences shown per reply
GOLD_CHARS = 700  # per gold answer
QUESTION_CHARS = 400
REPLY_CHARS = 1200
MAX_SENTENCES = 6  # reply sentences asked about; the rest are asked about as one
# How the model might spell its first token of a yes or a no (each counted when it is one token).
YES_SPELLINGS = ("yes", "Yes", "YES", " yes", " Yes")
NO_SPELLINGS = ("no", "No", "NO", " no", " No")

SYSTEM = (
    "You check the replies of a help-desk assistant for a benchmark. You are given the user's question, "
    "the reference answer an expert wrote, the reference passages it was written from, and the reply. "
    "Judge only by the reference answer and the passages, never by what you know yourself. "
    "Answer every question with one word: yes or no."
)
ASK_SUPPORTED = "Is everything this sentence says stated in the reference passages?"
ASK_CONTRADICTS = (
    "Does this sentence contradict the reference answer, that is, say something the reference answer "
    "says is not so?"
)
ASK_KEY_POINT = (
    "Does the reply answer the question the way the reference answer does, that is, is the key point "
    "of the reference answer present in the reply?"
)
ASK_ANSWERS = "Does the reply answer the user's question itself, not only say something related to it?"
SUFFIX = " Answer yes or no."

_WORD = re.compile(r"[a-z0-9]+")
_PIECES = re.compile(r"(?<=[.!?])\s+|\n+")
_SENTENCES = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
# Function words: what is left says what a line is about.
_FUNCTION_WORDS = """a an and are as at be been but by can could do does for from has have he her his i if in into
is it its me my no not of on or our she so than that the their them then there these they this to up us was we were
what when where which who will with would you your yes also just about more how"""
_STOP = frozenset(_FUNCTION_WORDS.split())


class Scorer(Protocol):
    """What the judge needs of the model (llama_cpp.Llama behind `LlamaScorer`; a double in unit tests)."""

    def count(self, text: str) -> int:
        """Tokens of `text`, without special tokens."""
        ...

    def yes_score(self, prompt: str) -> tuple[float, int]:
        """P(yes) / (P(yes) + P(no)) for the token after `prompt`, and the prompt tokens evaluated for it
        (those past the prefix the model already holds)."""
        ...


@dataclass(frozen=True)
class GoldTask:
    """What the judge reads of an MTRAG task: the data set's own fields, nothing Keel computed."""

    task_id: str
    question: str
    golds: list[str]
    passages: list[str]
    answerability: str


@dataclass(frozen=True)
class Thresholds:
    """How the scores become labels (see `label`)."""

    supported: float  # every sentence's support score at least this: supported
    contradicts: float  # any sentence's contradiction score at least this: wrong
    correct: float  # key-point score at least this: correct
    partly: float  # else the larger of the key-point and answers scores at least this: partly


# Set by `python -m bench.mtrag_model_judge_run --tune` on the first half of the hand-checked sample only.
# (15 replies: 7 correct, 6 partly, 2 not answering, none wrong; copilot_mtrag_model_judge_tuning.json).
THRESHOLDS = Thresholds(supported=0.3353, contradicts=0.9249, correct=0.8532, partly=0.7374)


@dataclass(frozen=True)
class Scores:
    """The model's P(yes) for each question about one reply."""

    supported: list[float]  # per reply sentence
    contradicts: list[float]  # per reply sentence
    key_point: float
    answers: float
    prompt_tokens: int  # tokens the model evaluated for this reply (the shared prefix once)
    seconds: float  # the model's time for this reply, when it was asked (kept in the cache)
    cached: bool = False


@dataclass(frozen=True)
class ModelVerdict:
    answer: str  # one of ANSWER_LABELS
    supported: bool  # every sentence of the reply is supported by the reference passages
    scores: Scores = field(repr=False)

    @property
    def correct(self) -> bool:
        """Judged correct and supported: what the issue's ">= 90 % of answered replies" counts."""
        return self.answer == "correct" and self.supported

    @property
    def prompt_tokens(self) -> int:
        return self.scores.prompt_tokens

    @property
    def seconds(self) -> float:
        return self.scores.seconds

    @property
    def cached(self) -> bool:
        return self.scores.cached


def label(scores: Scores, thresholds: Thresholds = THRESHOLDS) -> ModelVerdict:
    """The labels of one reply's scores: wrong when a sentence contradicts the reference answer, else
    correct when the key point is there, else partly when the reply answers in part, else not answering."""
    if max(scores.contradicts, default=0.0) >= thresholds.contradicts:
        answer = "wrong"
    elif scores.key_point >= thresholds.correct:
        answer = "correct"
    elif max(scores.key_point, scores.answers) >= thresholds.partly:
        answer = "partly"
    else:
        answer = "not answering"
    supported = bool(scores.supported) and min(scores.supported) >= thresholds.supported
    return ModelVerdict(answer, supported, scores)


def read_tasks(path: Path) -> dict[str, GoldTask]:
    """The MTRAG tasks by id, from the data set's JSONL (last user turn, targets, contexts)."""
    tasks = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        last = row["input"][-1]
        tasks[row["task_id"]] = GoldTask(
            task_id=row["task_id"],
            question=last["text"].strip(),
            golds=[t["text"].strip() for t in row["targets"]],
            passages=[c["text"] for c in row["contexts"]],
            answerability=row["answerability"][0],
        )
    return tasks


def reply_sentences(reply: str) -> list[str]:
    """The reply's sentences; past MAX_SENTENCES the rest are asked about as one."""
    found = [s.strip() for s in _SENTENCES.split(reply[:REPLY_CHARS].strip()) if _WORD.search(s.lower())]
    if len(found) > MAX_SENTENCES:
        found = [*found[: MAX_SENTENCES - 1], " ".join(found[MAX_SENTENCES - 1 :])]
    return found


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def select_passages(
    passages: list[str], focuses: Sequence[str], budget: int, count: Callable[[str], int]
) -> list[str]:
    """The passages cut to `budget` tokens (`count(text)` tokens each): the lines and sentences that matter
    for each focus (each reply sentence, the gold answer), in passage order, "..." marking what was left out.

    A piece scores the words it shares with a focus over the square root of its length (long pieces are
    not favoured for length alone). The focuses take turns, each keeping its best piece not yet kept, so
    every reply sentence gets its nearest evidence before any gets its second nearest."""
    split = [[p.strip() for p in _PIECES.split(passage) if p.strip()] for passage in passages]
    pieces = [(n, i, piece) for n, found in enumerate(split) for i, piece in enumerate(found)]
    piece_words = [_words(piece) for _n, _i, piece in pieces]
    rankings = []
    for focus in focuses:
        wanted = _words(focus)
        scored = [
            (-(len(words & wanted) / len(words) ** 0.5), index)
            for index, words in enumerate(piece_words)
            if words & wanted
        ]
        rankings.append([index for _score, index in sorted(scored)])
    kept: set[int] = set()
    used = 0
    while any(rankings):
        for ranking in rankings:
            while ranking and ranking[0] in kept:
                ranking.pop(0)
            if not ranking:
                continue
            index = ranking.pop(0)
            tokens = count(pieces[index][2]) + 1  # +1: the "..." or space beside it
            if used + tokens <= budget:
                kept.add(index)
                used += tokens
    shown = []
    for number, found in enumerate(split):
        parts, last = [], -1
        for index, (n, i, piece) in enumerate(pieces):
            if n != number or index not in kept:
                continue
            parts += ([] if i == last + 1 else ["..."]) + [piece]
            last = i
        if parts:
            if last < len(found) - 1:
                parts.append("...")
            shown.append(" ".join(parts))
    return shown


def context(task: GoldTask, reply: str, passages: list[str]) -> str:
    """What every question about a reply shares: question, reference answer, passages, reply."""
    golds = "\n".join(f"- {g[:GOLD_CHARS]}" for g in task.golds) or "- (none given)"
    note = (
        "\nThe annotators marked this question as not answerable from the passages."
        if task.answerability == "UNANSWERABLE"
        else ""
    )
    shown = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1)) or "(none bear on the reply)"
    return (
        f"Question: {task.question[:QUESTION_CHARS]}\n\n"
        f"Reference answer:\n{golds}{note}\n\n"
        f"Reference passages (the parts that bear on the reply):\n{shown}\n\n"
        f'Reply:\n"""{reply[:REPLY_CHARS]}"""'
    )


def chat_prompt(shared: str, question: str) -> str:
    """The Qwen2.5 chat template by hand, the assistant's turn open: its first token is the answer."""
    return (
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{shared}\n\n{question}{SUFFIX}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def questions(task: GoldTask, reply: str, count: Callable[[str], int]) -> tuple[list[str], list[str]]:
    """The reply's sentences, and every prompt about the reply in the order asked: per sentence supported
    then contradicts, then key point, then answers (the prompts share their prefix up to the question)."""
    sentences = reply_sentences(reply)
    passages = select_passages(task.passages, [*sentences, *task.golds], PASSAGE_TOKENS, count)
    shared = context(task, reply, passages)
    prompts = []
    for sentence in sentences:
        about = f'Sentence of the reply: "{sentence}"\n'
        prompts += [chat_prompt(shared, about + ASK_SUPPORTED), chat_prompt(shared, about + ASK_CONTRADICTS)]
    prompts += [chat_prompt(shared, ASK_KEY_POINT), chat_prompt(shared, ASK_ANSWERS)]
    return sentences, prompts


def cache_key(task_id: str, reply: str) -> str:
    return hashlib.sha256(f"{PROMPT_VERSION}\0{task_id}\0{reply}".encode()).hexdigest()


class ScoreCache:
    """Scores by (prompt version, task, reply) digest in a JSON file, written after every new reply so an
    interrupted run keeps what it paid for."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = (
            json.loads(path.read_text()) if path is not None and path.is_file() else {}
        )

    def get(self, key: str) -> Scores | None:
        entry = self.entries.get(key)
        if entry is None or "key_point" not in entry:  # an entry of another form: asked again
            return None
        return Scores(
            entry["supported"],
            entry["contradicts"],
            entry["key_point"],
            entry["answers"],
            entry["prompt_tokens"],
            entry["seconds"],
            cached=True,
        )

    def put(self, key: str, scores: Scores, task_id: str) -> None:
        # The machine's 1-minute load average beside the time: on a shared machine the two go together.
        self.entries[key] = {
            **asdict(scores),
            "cached": False,
            "task_id": task_id,
            "prompt_version": PROMPT_VERSION,
            "load_1m": os.getloadavg()[0],
        }
        if self.path is not None:
            scratch = self.path.with_suffix(".tmp")
            scratch.write_text(json.dumps(self.entries, indent=1, sort_keys=True) + "\n")
            os.replace(scratch, self.path)


class ModelJudge:
    def __init__(
        self, scorer: Scorer, cache: ScoreCache | None = None, thresholds: Thresholds = THRESHOLDS
    ) -> None:
        self.scorer, self.thresholds = scorer, thresholds
        self.cache = cache or ScoreCache(None)
        self.deadline: float | None = None  # time.monotonic() past which only cached scores are used
        self.used: set[str] = set()  # the cache keys of the replies judged, each distinct reply once

    def scores(self, task: GoldTask, reply: str) -> Scores | None:
        """The reply's scores, or None when they are not cached and the deadline has passed."""
        key = cache_key(task.task_id, reply)
        if (cached := self.cache.get(key)) is not None:
            self.used.add(key)
            return cached
        if self.deadline is not None and time.monotonic() > self.deadline:
            return None
        started = time.perf_counter()
        sentences, prompts = questions(task, reply, self.scorer.count)
        answers, tokens = [], 0
        for prompt in prompts:
            score, evaluated = self.scorer.yes_score(prompt)
            answers.append(score)
            tokens += evaluated
        per_sentence = answers[: 2 * len(sentences)]
        scores = Scores(
            supported=per_sentence[0::2],
            contradicts=per_sentence[1::2],
            key_point=answers[-2],
            answers=answers[-1],
            prompt_tokens=tokens,
            seconds=time.perf_counter() - started,
        )
        self.cache.put(key, scores, task.task_id)
        self.used.add(key)
        return scores

    def judge(self, task: GoldTask, reply: str) -> ModelVerdict | None:
        """The verdict, or None when the scores are not cached and the deadline has passed."""
        scores = self.scores(task, reply)
        return None if scores is None else label(scores, self.thresholds)


class LlamaScorer:
    """P(yes) from a llama_cpp.Llama's logits after the prompt. The prompt's tokens are compared with those
    the model's context already holds, and only the tokens past the common prefix are evaluated.

    `read_logits(ids)`: the logits of the given token ids at the last position evaluated (by default read
    from llama.cpp, which keeps the last position's logits only: no `logits_all` buffer is needed)."""

    def __init__(self, llm: Any, read_logits: Callable[[list[int]], list[float]] | None = None) -> None:
        self.llm = llm
        self.read_logits = read_logits or self._llama_logits
        self.yes_ids = self._single_tokens(YES_SPELLINGS)
        self.no_ids = self._single_tokens(NO_SPELLINGS)

    def _single_tokens(self, spellings: Sequence[str]) -> list[int]:
        ids = {tuple(self.llm.tokenize(s.encode(), add_bos=False, special=False)) for s in spellings}
        return sorted(t[0] for t in ids if len(t) == 1)

    def _llama_logits(self, ids: list[int]) -> list[float]:
        import llama_cpp

        row = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)
        return [float(row[i]) for i in ids]

    def count(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode(), add_bos=False, special=False))

    def yes_score(self, prompt: str) -> tuple[float, int]:
        tokens = list(self.llm.tokenize(prompt.encode(), add_bos=False, special=True))
        held = list(self.llm.input_ids[: self.llm.n_tokens])
        common = 0
        for a, b in zip(held, tokens, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(tokens) - 1)  # at least one token evaluated: its logits are the answer
        self.llm.n_tokens = common  # eval() drops the context's cache past n_tokens
        self.llm.eval(tokens[common:])
        logits = self.read_logits(self.yes_ids + self.no_ids)
        top = max(logits)
        weights = [math.exp(x - top) for x in logits]
        yes, no = sum(weights[: len(self.yes_ids)]), sum(weights[len(self.yes_ids) :])
        return yes / (yes + no), len(tokens) - common


def model_path(models_dir: Path | None = None) -> Path:
    """The Qwen file where Keel's model registry installs it (ModelFileMissing says how to install it)."""
    from keel.model_files import DEFAULT_MODELS_DIR, QWEN_CODER_1_5B, installed_path

    return installed_path(QWEN_CODER_1_5B, models_dir or DEFAULT_MODELS_DIR)


def load_judge(
    path: Path, cache: Path | None = None, thresholds: Thresholds = THRESHOLDS
) -> tuple[ModelJudge, float]:
    """The judge on the GGUF at `path`, and its load time in seconds."""
    from llama_cpp import Llama

    started = time.perf_counter()
    llm = Llama(model_path=str(path), n_ctx=N_CTX, n_threads=N_THREADS, seed=0, verbose=False)
    judge = ModelJudge(LlamaScorer(llm), ScoreCache(cache), thresholds)
    return judge, time.perf_counter() - started
