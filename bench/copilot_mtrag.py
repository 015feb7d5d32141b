"""The support copilot on MTRAG (IBM MTRAG-UN, `govt` collection): multi-turn questions about government
services, answered through Keel's own `Copilot.reply` pipeline over a knowledge base of the tasks' passages.

    .venv/bin/python -m bench.copilot_mtrag [--unseen] [--limit N] [--model-path PATH.gguf] [--replay]
        [--model-drafts MODES] [--large-drafts MODE] [--large-draft-timeout S] [--name RESULTS]
        [--model-judge] [--data ../shared/data/support_qa/mtrag_govt_dev.jsonl]

Every task's reference passages (deduplicated by text, 435 for the 157 tasks) are ingested as plain-text
documents into one tenant, so each question is answered against the whole collection. Per task the
conversation before the last user turn is put into the copilot's memory, then the last user turn is asked
through `runtime.copilot.reply`. By default the memory is seeded with the data set's own turns (user and
agent, as MTRAG evaluates: the reference history is given) through `ConversationMemory.append`, on the
same database the copilot reads. With `--replay` every earlier user turn goes through `reply()` instead
(694 replies instead of 157, past the ~25 minute budget on 2 cores), and the copilot's own answers
become the history. The default, all 157 tasks with seeded memory, takes 15-20 minutes on 2 cores
(ingestion 3-4 minutes of it); replies are deterministic run to run.

Measured, for the last turn only:
- answer correctness against the gold answer: token F1 (SQuAD normalisation) and the cosine of the
  reply's and the gold answer's MiniLM embeddings; for replies that reached the user (status answered),
  for escalated ones (the extract a person reviews), and over all tasks;
- citation precision: the share of cited chunks that come from one of the task's reference passages
  (or whose words are at least 80 % contained in one);
- UNANSWERABLE tasks declined (needs_clarification) or escalated;
- replies that reach the user (answered) yet fail Keel's own GroundingChecker against the chunks they cite
  (any unsupported sentence is a failure): the target is 0;
- escalation rate and reasons, intents, status distribution per answerability class;
- whether retrieval found a reference passage at all (the pipeline's rewritten query, top `sources`),
  and how many declined questions had one there;
- diagnostics: answered replies naming something (a capitalised word) their cited chunks do not, and the
  model's raw drafts (errors, empty replies), recorded by wrapping this runtime's `gateway.chat`;
- the injection guard on sources: how many of the retrieved chunks it flags, and for how many questions
  it drops top sources (or a retrieved reference passage) before the prompt;
- latency of the last-turn reply (p50/p95).

`--model-path` runs the same with another GGUF chat model (`Settings(chat=LocalChatSettings(...))`),
with its own `model_drafts` and `draft_timeout_s` when `--large-drafts` / `--large-draft-timeout` are
given. Without it only the embedded SmolLM2-135M is measured. `--model-judge` also grades every answered reply
with the model judge (bench/mtrag_model_judge.py: the larger local model, reading only the gold answers and
reference passages), after the copilot runs, beside the lexical judge. `--unseen` keeps the second half of the
tasks (never used for tuning); `--limit N` then takes the first N of them.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import statistics
import string
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.harness import percentile, summary, write_results
from bench.mtrag_judge import Judgement, containment, judge, token_f1
from bench.mtrag_model_judge_run import judge_costs_line, judge_runs
from bench.mtrag_report import handcheck_lines, table
from keel.config import CopilotSettings, LocalChatSettings, Settings
from keel.copilot.grounding import GroundingChecker, sentences
from keel.copilot.memory import ConversationMemory, rewrite_query
from keel.copilot.types import ReplyRequest, ReplyResponse
from keel.gateway.service import Caller
from keel.knowledge.index.base import SearchScope
from keel.knowledge.ingestion import IngestRequest
from keel.knowledge.retrieval import SearchRequest
from keel.runtime import Runtime
from keel.store.models import Chunk, SpanRecord

TENANT = "mtrag"
CALLER = Caller(tenant=TENANT, key_id="bench")
COMPANY = "the government services help desk"
# What the copilot's decline offers help with, as an operator of such a help desk would put it.
SCOPE = "questions about public services: benefits, licences, courts, health, parks, science and more"
CLASSES = ["ANSWERABLE", "PARTIAL", "UNDERSPECIFIED", "UNANSWERABLE"]
STATUSES = ["answered", "escalated", "needs_clarification"]
# A cited chunk whose words are this much contained in a reference passage counts as that passage.
CONTAINMENT = 0.8


# --- the data ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    task_id: str
    answerability: str
    history: list[tuple[str, str]]  # (role, text) before the last user turn; role "user" or "assistant"
    question: str
    golds: list[str]
    passages: list[str]  # reference passage texts


def load_tasks(path: Path) -> tuple[list[Task], dict[str, tuple[str, str]]]:
    """The tasks, and the unique passages keyed by their Keel source: (text, MTRAG document id)."""
    tasks, passages = [], {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        turns = [("user" if t["speaker"] == "user" else "assistant", t["text"].strip()) for t in row["input"]]
        assert turns[-1][0] == "user", row["task_id"]
        for context in row["contexts"]:
            passages[source_for(context)] = (context["text"], context["document_id"])
        tasks.append(
            Task(
                task_id=row["task_id"],
                answerability=row["answerability"][0],
                history=turns[:-1],
                question=turns[-1][1],
                golds=[t["text"].strip() for t in row["targets"]],
                passages=[c["text"] for c in row["contexts"]],
            )
        )
    return tasks, passages


def source_for(context: dict[str, str]) -> str:
    """A stable source: a digest of the text (what makes a passage unique here) as the folder, and the
    passage title as the file name, which Keel's text loader makes the document's title."""
    title = re.sub(r"[\\/\s]+", " ", context.get("title", "")).strip()[:120] or "passage"
    digest = hashlib.sha1(context["text"].encode()).hexdigest()[:10]
    return f"mtrag/{digest}/{title}.txt"


# --- one run -----------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    task: Task
    reply: ReplyResponse
    latency_s: float
    f1: float
    similarity: float
    cited_relevant: list[bool]
    grounding_failed: bool | None  # None: not answered
    retrieved_reference: bool
    top_cosine: float | None  # the best source's vector cosine: what the pipeline turns into relevance
    draft: str | None  # the model's raw answer to the last turn (or its error); None: the model was not asked
    sources_dropped: int  # of the top sources, those the injection guard keeps from the prompt
    sources_kept: int
    top_chunks: dict[str, bool]  # chunk id: flagged by the injection guard
    flagged_texts: list[str]
    reference_after_guard: bool  # a reference passage among the top sources the guard lets through
    unsupported: list[str] = field(default_factory=list)
    unknown_names: list[str] = field(default_factory=list)
    judgement: Judgement | None = None  # the independent judge, on answered replies
    load_1m: float = 0.0  # the machine's 1-minute load average when the reply was done
    half: str = "first"  # tuned on ("first") or unseen ("second")


def injection_flags(runtime: Runtime, texts: list[str]) -> list[bool]:
    """Which texts the copilot's injection guard treats as injected (and so drops from its sources)."""
    guard = getattr(runtime, "guard", None)  # absent before the guardrails existed
    if guard is None or guard.settings.injection_in_sources == "off" or not texts:
        return [False] * len(texts)
    # The copilot cuts out what the passage check flags (or drops the passage): any flag counts here.
    return [v.is_injection for v in guard.injection.check_passages(texts)]


def chunk_texts(runtime: Runtime, chunk_ids: list[str]) -> dict[str, str]:
    with runtime.database.session() as session:
        rows = session.execute(select(Chunk.id, Chunk.text).where(Chunk.id.in_(chunk_ids)))
        return {chunk_id: text for chunk_id, text in rows}


def ingest(runtime: Runtime, passages: dict[str, tuple[str, str]]) -> float:
    requests = [
        IngestRequest(
            tenant=TENANT, source=source, data=text.encode(), doc_type="text", meta={"mtrag_document_id": doc}
        )
        for source, (text, doc) in sorted(passages.items())
    ]
    started = time.perf_counter()
    for start in range(0, len(requests), 32):
        for result in runtime.ingestion.ingest_batch(requests[start : start + 32]):
            if isinstance(result, Exception):
                raise result
    return time.perf_counter() - started


async def ask(
    runtime: Runtime, memory: ConversationMemory, task: Task, replay: bool, drafts: list[str]
) -> tuple[ReplyResponse, float]:
    conversation_id: str | None = None
    if replay:
        for role, text in task.history:
            if role == "user":
                earlier = await runtime.copilot.reply(
                    ReplyRequest(message=text[:4000], conversation_id=conversation_id), CALLER
                )
                conversation_id = earlier.conversation_id
    else:
        conversation_id = memory.open(TENANT, None, None, "bench")
        for role, text in task.history:
            memory.append(conversation_id, role, text)
    drafts.clear()  # only the last turn's model call is kept
    started = time.perf_counter()
    reply = await runtime.copilot.reply(
        ReplyRequest(message=task.question[:4000], conversation_id=conversation_id), CALLER
    )
    return reply, time.perf_counter() - started


def record_drafts(runtime: Runtime) -> list[str]:
    """The model's raw completions (or the error it raised), for the report's examples: wraps this
    runtime's `gateway.chat`; the pipeline itself is unchanged."""
    drafts: list[str] = []
    chat = runtime.gateway.chat

    async def recording(request: Any, caller: Caller) -> Any:
        try:
            result = await chat(request, caller)
        except Exception as exc:
            drafts.append(f"<error {getattr(exc, 'code', type(exc).__name__)}: {exc}>")
            raise
        drafts.append(result[0].choices[0].message.content or "")
        return result

    runtime.gateway.chat = recording  # type: ignore[method-assign]
    return drafts


def unknown_names(reply: str, cited: list[str]) -> list[str]:
    """Capitalised words after a sentence's first (names of places, offices, programmes) that no cited
    chunk contains: the grounding check verifies numbers and negation, not names."""
    known = " ".join(cited).lower()
    words = [
        w.strip(string.punctuation + "\u2018\u2019\u201c\u201d")
        for s in sentences(reply)
        for w in s.split()[1:]
    ]
    return sorted({w for w in words if len(w) > 2 and w[0].isupper() and w.lower() not in known})


def empty_draft(draft: str) -> bool:
    """A completion whose reply has no letter or digit (the small model's `"reply": "]["`), or no reply."""
    try:
        return not re.search(r"[^\W_]", str(json.loads(draft)["reply"]))
    except (json.JSONDecodeError, KeyError, TypeError):
        return True


async def evaluate(
    runtime: Runtime, tasks: list[Task], passages: dict[str, tuple[str, str]], replay: bool, tuned: set[str]
) -> list[Outcome]:
    """`tuned`: the ids of the tasks the copilot's thresholds were set on (the first half by index)."""
    memory = ConversationMemory(runtime.database)
    drafts = record_drafts(runtime)
    checker = GroundingChecker(runtime.embedding_model)
    outcomes = []
    for number, task in enumerate(tasks, start=1):
        reply, latency = await ask(runtime, memory, task, replay, drafts)
        # What the pipeline searched with, to tell retrieval misses from answering misses.
        query = rewrite_query(task.question, task.history[-6:])
        found = await runtime.retriever.search(
            SearchRequest(query=query, k=runtime.settings.copilot.sources), SearchScope(tenant=TENANT)
        )
        references = set(task.passages)
        top = [r for r in found.results if "vector" in r.scores] or found.results
        flagged = injection_flags(runtime, [r.text for r in top])
        kept = [r for r, bad in zip(top, flagged, strict=True) if not bad]

        texts = chunk_texts(runtime, [c.chunk_id for c in reply.citations])
        cited_relevant = [
            passages.get(c.source, ("", ""))[0] in references
            or any(containment(texts.get(c.chunk_id, ""), p) >= CONTAINMENT for p in references)
            for c in reply.citations
        ]
        outcome = Outcome(
            task=task,
            reply=reply,
            latency_s=latency,
            f1=max(token_f1(reply.reply, gold) for gold in task.golds),
            similarity=0.0,
            cited_relevant=cited_relevant,
            grounding_failed=None,
            retrieved_reference=any(passages.get(r.source, ("", ""))[0] in references for r in found.results),
            top_cosine=top[0].scores["vector"].score if top and "vector" in top[0].scores else None,
            sources_dropped=sum(flagged),
            sources_kept=len(kept),
            top_chunks={r.chunk_id: flag for r, flag in zip(top, flagged, strict=True)},
            flagged_texts=[
                " ".join(r.text.split())[:200] for r, bad in zip(top, flagged, strict=True) if bad
            ],
            reference_after_guard=any(passages.get(r.source, ("", ""))[0] in references for r in kept),
            draft=drafts[-1] if drafts else None,
        )
        outcome.half = "first" if task.task_id in tuned else "second"
        outcome.load_1m = os.getloadavg()[0]
        if reply.status == "answered":
            outcome.judgement = judge(reply.reply, task.golds, task.passages)
            cited = [texts.get(c.chunk_id, "") for c in reply.citations]
            verdict = checker.check(
                reply.reply, [(c.chunk_id, texts.get(c.chunk_id, "")) for c in reply.citations]
            )
            outcome.unsupported = [s.sentence for s in verdict.sentences if not s.supported]
            outcome.grounding_failed = bool(outcome.unsupported) or not verdict.sentences
            outcome.unknown_names = unknown_names(reply.reply, cited)
        vectors = runtime.embedding_model.embed([reply.reply, *task.golds])
        outcome.similarity = max(float(vectors[0] @ vectors[i]) for i in range(1, len(vectors)))
        outcomes.append(outcome)
        print(
            f"[{number}/{len(tasks)}] {task.answerability:<14} {reply.status:<19} {latency:5.1f}s "
            f"f1={outcome.f1:.2f} cos={outcome.similarity:.2f} intent={reply.intent} "
            f"reasons={reply.escalation_reasons}"
            + (f" judged={'correct' if outcome.judgement.correct else 'no'}" if outcome.judgement else ""),
            flush=True,
        )
    return outcomes


def mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def judged(outcomes: list[Outcome]) -> dict[str, Any]:
    """The independent judge over the answered replies (bench/mtrag_judge.py)."""
    verdicts = [o.judgement for o in outcomes if o.reply.status == "answered" and o.judgement]
    return {
        "answered": len(verdicts),
        "supported": sum(v.supported for v in verdicts),
        "on_answer": sum(v.on_answer for v in verdicts),
        "correct": sum(v.correct for v in verdicts),
        "correct_share": sum(v.correct for v in verdicts) / len(verdicts) if verdicts else None,
        "mean_recall": mean([v.recall for v in verdicts]),
        "mean_f1": mean([v.f1 for v in verdicts]),
    }


def brief(outcomes: list[Outcome]) -> dict[str, Any]:
    """The targets' figures for a set of tasks."""
    answerable = [o for o in outcomes if o.task.answerability in ("ANSWERABLE", "PARTIAL")]
    unanswerable = [o for o in outcomes if o.task.answerability == "UNANSWERABLE"]
    return {
        "tasks": len(outcomes),
        "status": dict(Counter(o.reply.status for o in outcomes)),
        "answerable_or_partial": len(answerable),
        "answerable_or_partial_answered": sum(o.reply.status == "answered" for o in answerable),
        "unanswerable": len(unanswerable),
        "unanswerable_declined_or_escalated": sum(o.reply.status != "answered" for o in unanswerable),
        "latency_s": summary([o.latency_s for o in outcomes]) if outcomes else None,
        "model_asked": sum(o.draft is not None for o in outcomes),
        "load_1m_mean": mean([o.load_1m for o in outcomes]),
        "judge": judged(outcomes),
    }


def aggregate(outcomes: list[Outcome]) -> dict[str, Any]:
    by_status: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_status[o.reply.status].append(o)
    answered = by_status["answered"]
    with_refs = [o for o in outcomes if o.task.passages]
    cited = [flag for o in with_refs for flag in o.cited_relevant]
    unanswerable = [o for o in outcomes if o.task.answerability == "UNANSWERABLE"]
    answerable = [o for o in outcomes if o.task.answerability in ("ANSWERABLE", "PARTIAL")]
    asked = [o.latency_s for o in outcomes if o.draft is not None]
    drafts = [o.draft for o in outcomes if o.draft is not None]
    top_chunks = {chunk: flag for o in outcomes for chunk, flag in o.top_chunks.items()}
    declined = by_status["needs_clarification"]
    distribution = {
        cls: dict(Counter(o.reply.status for o in outcomes if o.task.answerability == cls)) for cls in CLASSES
    }
    return {
        "tasks": len(outcomes),
        "halves": {half: brief([o for o in outcomes if o.half == half]) for half in ("first", "second")},
        "all": brief(outcomes),
        "status": {s: len(by_status[s]) for s in STATUSES},
        "status_by_answerability": distribution,
        "f1": {
            "answered": mean([o.f1 for o in answered]),
            "escalated": mean([o.f1 for o in by_status["escalated"]]),
            "answerable_or_partial": mean([o.f1 for o in answerable]),
            "all": mean([o.f1 for o in outcomes]),
        },
        "similarity": {
            "answered": mean([o.similarity for o in answered]),
            "escalated": mean([o.similarity for o in by_status["escalated"]]),
            "answerable_or_partial": mean([o.similarity for o in answerable]),
            "all": mean([o.similarity for o in outcomes]),
        },
        "citation_precision": sum(cited) / len(cited) if cited else None,
        "citations": len(cited),
        "citations_on_tasks_without_reference": sum(
            len(o.reply.citations) for o in outcomes if not o.task.passages
        ),
        "retrieval_found_reference": mean([float(o.retrieved_reference) for o in with_refs]),
        "unanswerable_declined_or_escalated": mean(
            [float(o.reply.status in ("needs_clarification", "escalated")) for o in unanswerable]
        ),
        "unanswerable_declined": mean([float(o.reply.status == "needs_clarification") for o in unanswerable]),
        "answered_ungrounded": mean([float(bool(o.grounding_failed)) for o in answered]),
        "answered_ungrounded_count": sum(bool(o.grounding_failed) for o in answered),
        "answered_naming_what_cited_chunks_do_not": sum(bool(o.unknown_names) for o in answered),
        "declined": len(declined),
        "declined_with_reference_retrieved": sum(o.retrieved_reference for o in declined),
        "declined_answerable_with_reference_retrieved": sum(
            o.retrieved_reference and o.task.answerability == "ANSWERABLE" for o in declined
        ),
        "reference_retrieved_but_dropped_by_guard": sum(
            o.retrieved_reference and not o.reference_after_guard for o in with_refs
        ),
        "top_chunks": len(top_chunks),
        "top_chunks_flagged": sum(top_chunks.values()),
        "tasks_with_sources_dropped": sum(o.sources_dropped > 0 for o in outcomes),
        "tasks_with_all_sources_dropped": sum(
            o.sources_dropped > 0 and o.sources_kept == 0 for o in outcomes
        ),
        "model_drafts": len(drafts),
        "model_errors": sum(d.startswith("<error") for d in drafts),
        "model_drafts_empty": sum(empty_draft(d) for d in drafts if not d.startswith("<error")),
        "escalation_rate": len(by_status["escalated"]) / len(outcomes),
        "escalation_reasons": dict(Counter(r for o in outcomes for r in o.reply.escalation_reasons)),
        "intents": dict(Counter(o.reply.intent for o in outcomes).most_common()),
        "latency_s": summary([o.latency_s for o in outcomes]),
        # Declines, hand-overs and refusals never reach the model: the replies that did, on their own.
        "latency_model_s": summary(asked) if asked else None,
        "examples": [
            {
                "task_id": o.task.task_id,
                "answerability": o.task.answerability,
                "question": o.task.question,
                "gold": o.task.golds[0],
                "status": o.reply.status,
                "intent": o.reply.intent,
                "reasons": o.reply.escalation_reasons,
                "confidence": o.reply.confidence,
                "model_draft": o.draft,
                "reply": o.reply.reply,
                "cited_sources": [c.source for c in o.reply.citations],
                "cited_relevant": o.cited_relevant,
                "retrieved_reference": o.retrieved_reference,
                "top_cosine": None if o.top_cosine is None else round(o.top_cosine, 3),
                "unknown_names": o.unknown_names,
                "sources_dropped_by_guard": o.sources_dropped,
                "flagged_sources": o.flagged_texts,
                "f1": round(o.f1, 3),
                "similarity": round(o.similarity, 3),
                "unsupported_sentences": o.unsupported,
                "latency_s": round(o.latency_s, 2),
                "half": o.half,
                "judge": None
                if o.judgement is None
                else {
                    "correct": o.judgement.correct,
                    "supported": o.judgement.supported,
                    "recall": round(o.judgement.recall, 3),
                    "f1": round(o.judgement.f1, 3),
                    "sentences_not_in_reference": o.judgement.unsupported_sentences,
                },
            }
            for o in outcomes
        ],
    }


def span_times(runtime: Runtime, trace_ids: list[str]) -> dict[str, dict[str, float]]:
    """Where the last-turn replies' time went: each step's span durations (ms) from the stored traces."""
    runtime.tracing.flush()
    durations: dict[str, list[float]] = defaultdict(list)
    with runtime.database.session() as session:
        rows = session.execute(
            select(SpanRecord.name, SpanRecord.duration_ms).where(SpanRecord.trace_id.in_(trace_ids))
        )
        for name, duration in rows:
            durations[name].append(duration)
    return {
        name: {"n": len(values), "median": statistics.median(values), "p95": percentile(values, 95)}
        for name, values in sorted(durations.items())
    }


def run_model(
    model_path: Path | None,
    tasks: list[Task],
    passages: dict[str, tuple[str, str]],
    replay: bool,
    tuned: set[str],
    drafts: str | None = None,
    data_dir: Path | None = None,
    draft_timeout_s: float | None = None,
) -> dict[str, Any]:
    """`drafts`: the copilot's `model_drafts` mode (None: its default); `data_dir`: keep the knowledge base
    there and reuse it on the next run (unchanged passages are not embedded again); `draft_timeout_s`:
    the copilot's `draft_timeout_s` (None: its default)."""
    with tempfile.TemporaryDirectory() as scratch:
        overrides: dict[str, Any] = {"model_drafts": drafts} if drafts else {}
        if draft_timeout_s is not None:
            overrides["draft_timeout_s"] = draft_timeout_s
        copilot = CopilotSettings(company=COMPANY, scope=SCOPE, **overrides)
        settings = Settings(
            data_dir=data_dir or Path(scratch), copilot=copilot, chat=LocalChatSettings(model_path=model_path)
        )
        runtime = Runtime.build(settings)
        runtime.prepare()
        runtime.warm_up()
        ingest_s = ingest(runtime, passages)
        started = time.perf_counter()
        outcomes = asyncio.run(evaluate(runtime, tasks, passages, replay, tuned))
        result = aggregate(outcomes)
        result["spans_ms"] = span_times(runtime, [o.reply.trace_id for o in outcomes])
        result["model"] = settings.chat.resolved_model_path().name
        result["drafts_mode"] = settings.copilot.model_drafts
        result["draft_timeout_s"] = settings.copilot.draft_timeout_s
        result["ingest_s"] = ingest_s
        result["replies_s"] = time.perf_counter() - started
        runtime.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/data/support_qa/mtrag_govt_dev.jsonl"))
    parser.add_argument("--limit", type=int, default=None, help="the first N tasks only")
    parser.add_argument(
        "--model-path", type=Path, default=None, help="a larger GGUF chat model, also measured"
    )
    parser.add_argument("--replay", action="store_true", help="earlier user turns through reply() too")
    parser.add_argument(
        "--model-drafts",
        default="",
        help="comma-separated copilot.model_drafts modes to measure (when_unsure, always, never); "
        "default: the copilot's default",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="keep the knowledge base here and reuse it next time"
    )
    parser.add_argument(
        "--unseen", action="store_true", help="only the second half of the tasks (never used for tuning)"
    )
    parser.add_argument(
        "--large-drafts",
        default=None,
        help="model_drafts for the --model-path model only (default: as --model-drafts); the embedded "
        "model keeps --model-drafts",
    )
    parser.add_argument(
        "--large-draft-timeout", type=float, default=None, help="draft_timeout_s for the --model-path model"
    )
    parser.add_argument("--name", default="copilot_mtrag", help="the results' file name in bench/results")
    parser.add_argument(
        "--model-judge",
        action="store_true",
        help="grade answered replies with the larger local model too (make model-large; cached verdicts)",
    )
    args = parser.parse_args()

    tasks, passages = load_tasks(args.data)
    total = len(tasks)
    # Thresholds were set on the first half by index; the second half is reported apart, unseen.
    tuned = {t.task_id for t in tasks[: total // 2]}
    if args.unseen:
        tasks = tasks[total // 2 :]
    if args.limit:
        tasks = tasks[: args.limit]
    selection = ("the second (unseen) half" if args.unseen else "all tasks") + (
        f", its first {args.limit}" if args.limit else ""
    )
    load_before = os.getloadavg()
    started = time.perf_counter()
    models: dict[str, dict[str, Any]] = {}
    for mode in [m for m in args.model_drafts.split(",") if m] or [None]:
        label = f"embedded, model_drafts={mode}" if mode else "embedded"
        models[label] = run_model(None, tasks, passages, args.replay, tuned, mode, args.data_dir)
        if args.model_path:
            large = args.large_drafts or mode
            label = f"{args.model_path.name}, model_drafts={large}" if large else args.model_path.name
            models[label] = run_model(
                args.model_path,
                tasks,
                passages,
                args.replay,
                tuned,
                large,
                args.data_dir,
                args.large_draft_timeout,
            )
    elapsed = time.perf_counter() - started
    # After the copilot runs, so only one model is in memory at a time.
    judge_costs = judge_runs(models, args.data) if args.model_judge else None

    history = (
        "every earlier user turn replayed through reply()"
        if args.replay
        else "memory seeded with the data set's earlier user and agent turns (ConversationMemory.append)"
    )
    lines = [
        f"MTRAG `govt` dev: {len(tasks)} of {total} tasks, {len(passages)} unique reference passages ingested "
        f'as plain text into one tenant; company "{COMPANY}"; history: {history}; the last user turn '
        "through `Copilot.reply`. The copilot's thresholds were set on the first half of the tasks (by "
        "index); the second half was not looked at before this run. Answered replies are judged by "
        "`bench/mtrag_judge.py`, which reads only the data set's gold answers and reference passages.",
        "",
        f"Tasks measured: {selection} of the file, {len(tasks)} tasks: "
        f"{', '.join(t.task_id for t in tasks)}.",
        "",
    ]
    for name, result in models.items():
        lines += table(
            f"{name} chat model ({result['model']}, model_drafts={result['drafts_mode']}, "
            f"draft_timeout_s={result['draft_timeout_s']:g})",
            result,
        )
    lines += handcheck_lines()
    if judge_costs:
        lines.append(judge_costs_line(judge_costs))
        lines.append("")
    if not args.model_path:
        lines.append(
            "Only the embedded SmolLM2-135M was measured (run with `--model-path` to add a larger GGUF)."
        )
        lines.append("")
    load_after = os.getloadavg()
    lines.append(
        f"Total run time {elapsed / 60:.1f} min; 1/5/15-min load average "
        f"{', '.join(f'{v:.2f}' for v in load_before)} before, {', '.join(f'{v:.2f}' for v in load_after)} "
        "after, on a 2-core machine shared with other work (latencies are only comparable between runs on "
        "an equally loaded machine)."
    )
    write_results(
        args.name,
        {
            "tasks": len(tasks),
            "task_ids": [t.task_id for t in tasks],
            "selection": selection,
            "tasks_available": total,
            "tuned_on": "first half by index",
            "passages": len(passages),
            "history": "replay" if args.replay else "seeded",
            "run_s": elapsed,
            "load_average_before": load_before,
            "load_average_after": load_after,
            "models": models,
            "model_judge": judge_costs,
        },
        "\n".join(lines),
    )


if __name__ == "__main__":
    main()
