"""The MTRAG copilot bench's report: the targets per half, the full metrics table, the hand-checked sample."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

STATUSES = ["answered", "escalated", "needs_clarification"]


def fmt(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:.1f} %" if percent else f"{value:.3f}"


def share(part: int, whole: int) -> str:
    return f"{part} of {whole} ({part / whole * 100:.0f} %)" if whole else "n/a"


def targets_table(r: dict[str, Any]) -> list[str]:
    """The issue's targets, per half: tuned on the first, the second unseen."""
    columns = {"first half (tuned on)": r["halves"]["first"], "second half (unseen)": r["halves"]["second"]}
    columns["all"] = r["all"]
    rows = [
        "| target | " + " | ".join(columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(cell(b) for b in columns.values()) + " |"

    rows += [
        row("tasks", lambda b: str(b["tasks"])),
        row(
            "ANSWERABLE + PARTIAL answered (target >= 50 %)",
            lambda b: share(b["answerable_or_partial_answered"], b["answerable_or_partial"]),
        ),
        row(
            "lexical judge: answered judged correct: every sentence in a reference passage and on the gold answer (target >= 90 %)",
            lambda b: share(b["judge"]["correct"], b["judge"]["answered"]),
        ),
        row(
            "answered with every sentence in a reference passage",
            lambda b: share(b["judge"]["supported"], b["judge"]["answered"]),
        ),
        row(
            "answered recalling >= 20 % of the gold answer's content words",
            lambda b: share(b["judge"]["on_answer"], b["judge"]["answered"]),
        ),
        *(model_judge_rows(row) if all("model_judge" in b for b in columns.values()) else []),
        row(
            "UNANSWERABLE declined or escalated (target >= 90 %)",
            lambda b: share(b["unanswerable_declined_or_escalated"], b["unanswerable"]),
        ),
        row(
            "reply p50 / p95 (targets 4 s / 8 s)",
            lambda b: (
                f"{b['latency_s']['median']:.2f} s / {b['latency_s']['p95']:.2f} s"
                if b["latency_s"]
                else "n/a"
            ),
        ),
        row("replies that asked the model", lambda b: str(b["model_asked"])),
        row(
            "mean 1-minute load average during the replies",
            lambda b: f"{b['load_1m_mean']:.1f}" if b["load_1m_mean"] is not None else "n/a",
        ),
    ]
    return [*rows, ""]


def model_judge_rows(row: Callable[[str, Callable[[dict[str, Any]], str]], str]) -> list[str]:
    """The model judge's verdicts (bench/mtrag_model_judge.py) beside the lexical judge's, when it ran."""

    def count(key: str) -> Callable[[dict[str, Any]], str]:
        # Of the answered replies it judged (a run with a deadline may leave some unjudged).
        return lambda b: share(b["model_judge"][key], b["model_judge"]["judged"])

    return [
        row(
            "model judge: answered judged correct and supported (target >= 90 %)",
            count("correct_and_supported"),
        ),
        row("model judge: partly", count("partly")),
        row("model judge: not answering", count("not_answering")),
        row("model judge: wrong", count("wrong")),
        row("model judge: a claim the reference passages do not support", count("unsupported")),
    ]


def table(name: str, r: dict[str, Any]) -> list[str]:
    lat = r["latency_s"]
    status = ", ".join(f"{s} {n}" for s, n in r["status"].items())
    return [
        f"### {name}",
        "",
        *targets_table(r),
        "| metric | value |",
        "| --- | ---: |",
        f"| tasks | {r['tasks']} ({status}) |",
        f"| token F1, answered | {fmt(r['f1']['answered'])} |",
        f"| token F1, escalated (extract for review) | {fmt(r['f1']['escalated'])} |",
        f"| token F1, ANSWERABLE + PARTIAL tasks | {fmt(r['f1']['answerable_or_partial'])} |",
        f"| token F1, all tasks | {fmt(r['f1']['all'])} |",
        f"| embedding cosine, answered | {fmt(r['similarity']['answered'])} |",
        f"| embedding cosine, escalated | {fmt(r['similarity']['escalated'])} |",
        f"| embedding cosine, ANSWERABLE + PARTIAL tasks | {fmt(r['similarity']['answerable_or_partial'])} |",
        f"| embedding cosine, all tasks | {fmt(r['similarity']['all'])} |",
        f"| citation precision ({r['citations']} citations on tasks with reference passages) "
        f"| {fmt(r['citation_precision'], True)} |",
        f"| retrieval: a reference passage in the top sources | {fmt(r['retrieval_found_reference'], True)} |",
        f"| UNANSWERABLE declined or escalated | {fmt(r['unanswerable_declined_or_escalated'], True)} |",
        f"| UNANSWERABLE declined (needs_clarification) | {fmt(r['unanswerable_declined'], True)} |",
        f"| answered yet failing grounding (target 0) | {fmt(r['answered_ungrounded'], True)} "
        f"({r['answered_ungrounded_count']}) |",
        f"| answered replies naming something their cited chunks do not (names are not checked) "
        f"| {r['answered_naming_what_cited_chunks_do_not']} of {r['status']['answered']} |",
        f"| declined although a reference passage was in the top sources "
        f"| {r['declined_with_reference_retrieved']} of {r['declined']} "
        f"({r['declined_answerable_with_reference_retrieved']} ANSWERABLE) |",
        f"| injection guard: tasks with top sources dropped / all dropped / a retrieved reference passage dropped "
        f"| {r['tasks_with_sources_dropped']} / {r['tasks_with_all_sources_dropped']} / "
        f"{r['reference_retrieved_but_dropped_by_guard']} |",
        f"| injection guard: distinct top-source chunks it flags | {r['top_chunks_flagged']} of {r['top_chunks']} |",
        f"| model asked / raised an error / answered with an empty reply (`][`) "
        f"| {r['model_drafts']} / {r['model_errors']} / {r['model_drafts_empty']} |",
        f"| escalation rate | {fmt(r['escalation_rate'], True)} |",
        f"| last-turn reply p50 / p95, all | {lat['median']:.2f} s / {lat['p95']:.2f} s |",
        (
            f"| last-turn reply p50 / p95, the {model['n']} that asked the model "
            f"| {model['median']:.2f} s / {model['p95']:.2f} s |"
            if (model := r["latency_model_s"])
            else "| last-turn reply, asking the model | none asked it |"
        ),
        "",
        "| answerability | tasks | answered | escalated | needs_clarification |",
        "| --- | ---: | ---: | ---: | ---: |",
        *(
            f"| {cls} | {sum(counts.values())} | "
            + " | ".join(str(counts.get(s, 0)) for s in STATUSES)
            + " |"
            for cls, counts in r["status_by_answerability"].items()
            if counts
        ),
        "",
        "Escalation reasons: "
        + (", ".join(f"{k} {v}" for k, v in sorted(r["escalation_reasons"].items())) or "none")
        + ". Intents: "
        + ", ".join(f"{k} {v}" for k, v in r["intents"].items())
        + ".",
        "",
        f"Ingestion {r['ingest_s']:.0f} s; {r['tasks']} replies (and checks) {r['replies_s']:.0f} s.",
        "",
        *spans_table(r.get("spans_ms") or {}),
    ]


def spans_table(spans: dict[str, dict[str, float]]) -> list[str]:
    """Where a reply's time goes, from its trace: each step's span (the reply's own span is the total)."""
    if not spans:
        return []
    return [
        "| span (where a last-turn reply's time goes) | spans | p50 ms | p95 ms |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {t['n']:.0f} | {t['median']:.0f} | {t['p95']:.0f} |"
            for name, t in sorted(spans.items(), key=lambda item: -item[1]["median"])
        ),
        "",
    ]


HANDCHECK = Path(__file__).parent / "results" / "copilot_mtrag_handcheck.json"


def handcheck_lines() -> list[str]:
    """The hand-checked sample of answered replies (written by a person, read here)."""
    if not HANDCHECK.is_file():
        return []
    checked = json.loads(HANDCHECK.read_text())
    verdicts = Counter(row["verdict"] for row in checked["replies"])
    agree = sum(row["verdict"] == "correct" and row.get("judge_correct") for row in checked["replies"])
    return [
        f"### Hand-checked sample ({len(checked['replies'])} answered replies, {checked['run']})",
        "",
        ", ".join(f"{verdict} {n}" for verdict, n in verdicts.most_common())
        + f"; the judge and the hand check both call {agree} correct. Each verdict with its note: "
        "`bench/results/copilot_mtrag_handcheck.json`.",
        "",
    ]
