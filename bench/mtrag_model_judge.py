"""A model judge for the MTRAG bench: the larger local model (Qwen2.5-Coder-1.5B-Instruct, `make model-large`)
grades each answered reply against the data set's own gold answers and gold reference passages.

It reads nothing of Keel's retrieval, embeddings or grounding checks: only the question, the gold answer(s),
the task's reference passages (cut to what fits the context window) and the reply. The model answers two
questions, and its output is held to a fixed form by a llama.cpp grammar, so no prose is ever parsed:

    answer: correct | partly | not answering | wrong
    supported: yes | no

(a) whether the reply answers the question consistently with the reference answer, (b) whether every claim
in it is supported by the reference passages. Verdicts are cached in a JSON file by a digest of the prompt
version, the task and the reply, so a re-run only asks about replies it has not seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

ANSWER_LABELS = ("correct", "partly", "not answering", "wrong")
SUPPORT_LABELS = ("yes", "no")
# Bump when the prompt or the trimming changes: cached verdicts of another version are not reused.
PROMPT_VERSION = "1"
N_CTX = 2048
N_THREADS = 2
MAX_TOKENS = 24  # the longest output, "answer: not answering\nsupported: yes", with room to spare
TEMPLATE_MARGIN = 48  # the chat template's own tokens (role markers), counted generously
GOLD_CHARS = 900  # per gold answer; a few run to 1,500 characters
QUESTION_CHARS = 600
REPLY_CHARS = 1500

GRAMMAR = r"""
root ::= "answer: " verdict "\nsupported: " support
verdict ::= "correct" | "partly" | "not answering" | "wrong"
support ::= "yes" | "no"
"""
_OUTPUT = re.compile(r"answer: (correct|partly|not answering|wrong)\nsupported: (yes|no)")

SYSTEM = (
    "You grade the replies of a help-desk assistant for a benchmark. You are given the user's question, the "
    "reference answer an expert wrote from the reference passages, the passages themselves, and the reply "
    "to grade. Judge only by the reference answer and the passages, never by what you know yourself."
)
INSTRUCTIONS = """Answer two questions about the reply.
(a) Does the reply answer the question consistently with the reference answer?
correct: it answers what was asked, and what it says agrees with the reference answer.
partly: it agrees with the reference answer but gives only part of what was asked.
not answering: its sentences may be true, but they do not answer the question.
wrong: it contradicts the reference answer, or answers a question the reference answer says cannot be answered.
(b) Is every claim in the reply supported by the reference passages? yes or no.
Write exactly two lines:
answer: correct, partly, not answering or wrong
supported: yes or no"""

_WORD = re.compile(r"[a-z0-9]+")
_PIECES = re.compile(r"(?<=[.!?])\s+|\n+")
# Function words: what is left says what a line is about.
_FUNCTION_WORDS = """a an and are as at be been but by can could do does for from has have he her his i if in into
is it its me my no not of on or our she so than that the their them then there these they this to up us was we were
what when where which who will with would you your yes also just about more how"""
_STOP = frozenset(_FUNCTION_WORDS.split())


class ChatModel(Protocol):
    """What the judge needs of a llama_cpp.Llama (a double in unit tests)."""

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]: ...

    def create_chat_completion(self, messages: Any, **options: Any) -> Any: ...


@dataclass(frozen=True)
class GoldTask:
    """What the judge reads of an MTRAG task: the data set's own fields, nothing Keel computed."""

    task_id: str
    question: str
    golds: list[str]
    passages: list[str]
    answerability: str


@dataclass(frozen=True)
class ModelVerdict:
    answer: str  # one of ANSWER_LABELS
    supported: bool  # (b): every claim in the reply is in the reference passages
    prompt_tokens: int
    seconds: float  # the model's time for this verdict, when it was asked (kept in the cache)
    cached: bool = False

    @property
    def correct(self) -> bool:
        """Judged correct and supported: what the issue's ">= 90 % of answered replies" counts."""
        return self.answer == "correct" and self.supported


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


def parse_output(text: str) -> tuple[str, bool]:
    """The two labels of a grammar-held output; anything else is an error (the grammar makes it impossible)."""
    match = _OUTPUT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"judge output outside the grammar: {text!r}")
    return match.group(1), match.group(2) == "yes"


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP}


def trim_passages(passages: list[str], focus: str, budget: int, count: Callable[[str], int]) -> list[str]:
    """The passages cut to `budget` tokens (`count(text)` tokens each): their lines and sentences that share
    the most words with `focus` (the reply and the gold answer) are kept, in passage order, "..." marking
    what was left out.

    Whole passages are kept when they all fit. Otherwise a piece scores the words it shares with the focus
    over the square root of its length (long pieces are not favoured for length alone), so the evidence for
    or against the reply's claims is what the model reads."""
    whole = [" ".join(p.split()) for p in passages]
    if sum(count(p) for p in whole) <= budget:
        return whole
    wanted = _words(focus)
    split = [[p.strip() for p in _PIECES.split(passage) if p.strip()] for passage in passages]
    ranked = []  # (score, passage index, piece index, tokens)
    for number, pieces in enumerate(split):
        for index, piece in enumerate(pieces):
            words = _words(piece)
            score = len(words & wanted) / len(words) ** 0.5 if words else 0.0
            ranked.append((-score, number, index, count(piece) + 1))  # +1: the "..." or space beside it
    kept: set[tuple[int, int]] = set()
    used = 0
    for _score, number, index, tokens in sorted(ranked):
        if used + tokens <= budget:
            kept.add((number, index))
            used += tokens
    trimmed = []
    for number, pieces in enumerate(split):
        shown = [index for index in range(len(pieces)) if (number, index) in kept]
        parts, last = [], -1
        for index in shown:
            parts += ([] if index == last + 1 else ["..."]) + [pieces[index]]
            last = index
        if shown and last < len(pieces) - 1:
            parts.append("...")
        trimmed.append(" ".join(parts) if parts else "(left out: nothing in it bears on the reply)")
    return trimmed


def user_message(task: GoldTask, reply: str, passages: list[str]) -> str:
    golds = "\n".join(f"- {g[:GOLD_CHARS]}" for g in task.golds) or "- (none given)"
    note = (
        "\nThe annotators marked this question as not answerable from the passages."
        if task.answerability == "UNANSWERABLE"
        else ""
    )
    shown = "\n".join(f"[{i}] {p}" for i, p in enumerate(passages, start=1)) or "(no reference passages)"
    return (
        f"Question: {task.question[:QUESTION_CHARS]}\n\n"
        f"Reference answer:\n{golds}{note}\n\n"
        f"Reference passages:\n{shown}\n\n"
        f'Reply to grade:\n"""{reply[:REPLY_CHARS]}"""\n\n'
        f"{INSTRUCTIONS}"
    )


def build_messages(model: ChatModel, task: GoldTask, reply: str, n_ctx: int = N_CTX) -> list[dict[str, str]]:
    """The chat messages for one verdict, the passages trimmed so that the prompt and the output fit."""

    def count(text: str) -> int:
        return len(model.tokenize(text.encode(), add_bos=False))

    frame = count(SYSTEM) + count(user_message(task, reply, ["" for _ in task.passages]))
    budget = n_ctx - frame - MAX_TOKENS - TEMPLATE_MARGIN
    focus = reply + " " + " ".join(task.golds)
    passages = trim_passages(task.passages, focus, max(budget, 0), count)
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": user_message(task, reply, passages)},
    ]


def cache_key(task_id: str, reply: str) -> str:
    return hashlib.sha256(f"{PROMPT_VERSION}\0{task_id}\0{reply}".encode()).hexdigest()


class VerdictCache:
    """Verdicts by (prompt version, task, reply) digest in a JSON file, written after every new verdict so an
    interrupted run keeps what it paid for."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = (
            json.loads(path.read_text()) if path is not None and path.is_file() else {}
        )

    def get(self, key: str) -> ModelVerdict | None:
        entry = self.entries.get(key)
        if entry is None:
            return None
        return ModelVerdict(
            entry["answer"], entry["supported"], entry["prompt_tokens"], entry["seconds"], cached=True
        )

    def put(self, key: str, verdict: ModelVerdict, task_id: str) -> None:
        # The machine's 1-minute load average beside the time: on a shared machine the two go together.
        self.entries[key] = {
            **asdict(verdict),
            "cached": False,
            "task_id": task_id,
            "load_1m": os.getloadavg()[0],
        }
        if self.path is not None:
            scratch = self.path.with_suffix(".tmp")
            scratch.write_text(json.dumps(self.entries, indent=1, sort_keys=True) + "\n")
            os.replace(scratch, self.path)


class ModelJudge:
    def __init__(
        self, model: ChatModel, grammar: Any = None, cache: VerdictCache | None = None, n_ctx: int = N_CTX
    ) -> None:
        self.model, self.grammar, self.n_ctx = model, grammar, n_ctx
        self.cache = cache or VerdictCache(None)
        self.deadline: float | None = None  # time.monotonic() past which only cached verdicts are given
        self.used: set[str] = set()  # the cache keys of the verdicts given, each distinct reply once

    def judge(self, task: GoldTask, reply: str) -> ModelVerdict | None:
        """The verdict, or None when it is not cached and the deadline has passed."""
        key = cache_key(task.task_id, reply)
        if (cached := self.cache.get(key)) is not None:
            self.used.add(key)
            return cached
        if self.deadline is not None and time.monotonic() > self.deadline:
            return None
        messages = build_messages(self.model, task, reply, self.n_ctx)
        started = time.perf_counter()
        result = self.model.create_chat_completion(
            messages, temperature=0.0, max_tokens=MAX_TOKENS, grammar=self.grammar, seed=0
        )
        seconds = time.perf_counter() - started
        answer, supported = parse_output(result["choices"][0]["message"]["content"] or "")
        verdict = ModelVerdict(answer, supported, int(result["usage"]["prompt_tokens"]), seconds)
        self.cache.put(key, verdict, task.task_id)
        self.used.add(key)
        return verdict


def model_path(models_dir: Path | None = None) -> Path:
    """The Qwen file where Keel's model registry installs it (ModelFileMissing says how to install it)."""
    from keel.model_files import DEFAULT_MODELS_DIR, QWEN_CODER_1_5B, installed_path

    return installed_path(QWEN_CODER_1_5B, models_dir or DEFAULT_MODELS_DIR)


def load_judge(path: Path, cache: Path | None = None, n_ctx: int = N_CTX) -> tuple[ModelJudge, float]:
    """The judge on the GGUF at `path`, and its load time in seconds."""
    from llama_cpp import Llama
    from llama_cpp.llama_grammar import LlamaGrammar

    started = time.perf_counter()
    model = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=N_THREADS, seed=0, verbose=False)
    grammar = LlamaGrammar.from_string(GRAMMAR, verbose=False)
    return ModelJudge(model, grammar, VerdictCache(cache), n_ctx), time.perf_counter() - started
