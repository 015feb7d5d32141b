"""The model judge (bench/mtrag_model_judge.py) checked against the hand-checked sample and applied to the
answered replies a copilot MTRAG run recorded:

    .venv/bin/python -m bench.mtrag_model_judge_run --tune
    .venv/bin/python -m bench.mtrag_model_judge_run [--results copilot_mtrag] [--name copilot_mtrag_model_judge]
        [--data ../shared/data/support_qa/mtrag_govt_dev.jsonl] [--cache PATH.json] [--deadline-min M]

`--tune` asks the model about the sample's first-half replies only and sets the judge's thresholds on them
(written to `copilot_mtrag_model_judge_tuning.json`; `THRESHOLDS` in the judge module holds the result). The
plain run reports the judge's agreement with the hand on each half apart: the second half was not used to
set anything. The recorded runs hold each reply, its task id and half, but not the gold answers or passages:
those are read again from the data set by task id. `bench/copilot_mtrag.py --model-judge` calls `judge_runs`
on a fresh run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, percentile, write_results
from bench.mtrag_judge import judge as lexical_judge
from bench.mtrag_model_judge import (
    ANSWER_LABELS,
    N_CTX,
    PASSAGE_TOKENS,
    PROMPT_VERSION,
    THRESHOLDS,
    GoldTask,
    ModelJudge,
    ModelVerdict,
    Scores,
    Thresholds,
    label,
    load_judge,
    model_path,
    read_tasks,
)

DATA = Path("../shared/data/support_qa/mtrag_govt_dev.jsonl")
CACHE = RESULTS / "copilot_mtrag_model_judge_cache.json"
HANDCHECK = RESULTS / "copilot_mtrag_handcheck.json"
TUNING = "copilot_mtrag_model_judge_tuning"


def summarise(verdicts: list[ModelVerdict], unjudged: int = 0) -> dict[str, Any]:
    """Per answer label, the unsupported ones, and the issue's measure: judged correct and supported.
    `unjudged`: answered replies left without a verdict (the run's deadline passed)."""
    labels = Counter(v.answer for v in verdicts)
    return {
        "answered": len(verdicts) + unjudged,
        "judged": len(verdicts),
        **{name.replace(" ", "_"): labels.get(name, 0) for name in ANSWER_LABELS},
        "unsupported": sum(not v.supported for v in verdicts),
        "correct_and_supported": sum(v.correct for v in verdicts),
    }


def judge_run(result: dict[str, Any], tasks: dict[str, GoldTask], judge: ModelJudge) -> list[ModelVerdict]:
    """Judge one model's answered replies in place: each example gets `model_judge`, each half's brief and
    the `all` brief get the summary. Returns the verdicts."""
    verdicts: dict[str, list[ModelVerdict]] = {"first": [], "second": []}
    unjudged: Counter[str] = Counter()
    for example in result["examples"]:
        if example["status"] != "answered":
            continue
        verdict = judge.judge(tasks[example["task_id"]], example["reply"])
        if verdict is None:
            unjudged[example["half"]] += 1
            continue
        example["model_judge"] = {
            "answer": verdict.answer,
            "supported": verdict.supported,
            "correct": verdict.correct,
        }
        verdicts[example["half"]].append(verdict)
    for half, judged in verdicts.items():
        result["halves"][half]["model_judge"] = summarise(judged, unjudged[half])
    every = verdicts["first"] + verdicts["second"]
    result["all"]["model_judge"] = summarise(every, sum(unjudged.values()))
    return every


def judge_runs(models: dict[str, dict[str, Any]], data: Path, cache: Path | None = CACHE) -> dict[str, Any]:
    """Every run's answered replies judged by the model (loaded once, after the copilot runs: one model in
    memory at a time). Returns the judge's own costs."""
    judge, load_s = load_judge(model_path(), cache)
    tasks = read_tasks(data)
    verdicts = [v for result in models.values() for v in judge_run(result, tasks, judge)]
    return costs(verdicts, load_s)


def costs(verdicts: list[ModelVerdict], load_s: float) -> dict[str, Any]:
    """The load, and the time per reply as each was measured when the model was asked (cached ones too)."""
    asked = [v for v in verdicts if not v.cached]
    seconds = [v.seconds for v in verdicts]
    return {
        "load_s": load_s,
        "judged": len(verdicts),
        "asked_model": len(asked),
        "from_cache": len(verdicts) - len(asked),
        "seconds_median": statistics.median(seconds) if seconds else None,
        "seconds_p95": percentile(seconds, 95) if seconds else None,
        "prompt_tokens_median": statistics.median(v.prompt_tokens for v in verdicts) if verdicts else None,
    }


def judge_costs_line(cost: dict[str, Any]) -> str:
    per = (
        f"median {cost['seconds_median']:.1f} s, p95 {cost['seconds_p95']:.1f} s per reply"
        if cost["seconds_median"] is not None
        else "none judged"
    )
    return (
        f"Model judge (bench/mtrag_model_judge.py): load {cost['load_s']:.1f} s; {cost['judged']} answered replies "
        f"judged, {cost['asked_model']} asked of the model now, {cost['from_cache']} from the cache ({per})."
    )


def kappa(pairs: list[tuple[bool, bool]]) -> float | None:
    """Cohen's kappa of two yes/no raters: agreement beyond what their base rates give by chance."""
    return label_kappa(pairs)


def label_kappa(pairs: Sequence[tuple[object, object]]) -> float | None:
    """Cohen's kappa of two raters over any labels (None when chance agreement is already total)."""
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    first, second = Counter(a for a, _ in pairs), Counter(b for _, b in pairs)
    chance = sum(first[x] * second[x] for x in first) / n / n
    return None if chance == 1 else (observed - chance) / (1 - chance)


def binary(pairs: list[tuple[bool, bool]]) -> dict[str, Any]:
    return {
        "agree": sum(a == b for a, b in pairs),
        "of": len(pairs),
        "both_yes": sum(a and b for a, b in pairs),
        "judge_yes_hand_no": sum(a and not b for a, b in pairs),
        "judge_no_hand_yes": sum(b and not a for a, b in pairs),
        "kappa": kappa(pairs),
    }


def sample_rows(
    judge: ModelJudge, tasks: dict[str, GoldTask], handcheck: dict[str, Any], halves: Sequence[str]
) -> list[dict[str, Any]]:
    """The hand-checked replies of `halves` with the model's scores (asked or cached) and the lexical
    judge's labels; replies past the judge's deadline are left out."""
    rows = []
    for row in handcheck["replies"]:
        if row["half"] not in halves:
            continue
        task = tasks[row["task_id"]]
        scores = judge.scores(task, row["reply"])
        if scores is None:
            continue
        lexical = lexical_judge(row["reply"], task.golds, task.passages)
        rows.append(
            {
                "task_id": row["task_id"],
                "half": row["half"],
                "hand": row["verdict"],
                "scores": scores,
                "lexical_correct": lexical.correct,
                "lexical_supported": lexical.supported,
            }
        )
    return rows


def _cuts(values: list[float]) -> list[float]:
    """Candidate thresholds for a score: midway between each two neighbouring values seen, and beyond
    both ends (the widest margins the data allow)."""
    ordered = sorted(set(values))
    if not ordered:
        return [0.5]
    inner = [(a + b) / 2 for a, b in itertools.pairwise(ordered)]
    return [ordered[0] / 2, *inner, (ordered[-1] + 1) / 2]


def _margin(value: float, cut: float) -> float:
    return abs(value - cut)


def tune(rows: list[dict[str, Any]]) -> tuple[Thresholds, dict[str, Any]]:
    """Thresholds from `rows` (the first half only): the answer thresholds that give the most labels the
    hand gave (then the highest kappa, then the widest margin between any score and its threshold), and
    then the support threshold that makes "correct and supported" agree most with the hand's "correct"."""
    scores: list[Scores] = [r["scores"] for r in rows]
    hands = [r["hand"] for r in rows]
    contradicts = [max(s.contradicts, default=0.0) for s in scores]
    keys = [s.key_point for s in scores]
    answers = [max(s.key_point, s.answers) for s in scores]
    best: tuple[Any, ...] | None = None
    for c, k, p in itertools.product(_cuts(contradicts), _cuts(keys), _cuts(answers)):
        guess = [label(s, Thresholds(0.0, c, k, p)).answer for s in scores]
        pairs = list(zip(guess, hands, strict=True))
        margin = min(
            min((_margin(x, c) for x in contradicts), default=1.0),
            min((_margin(x, k) for x in keys), default=1.0),
            min((_margin(x, p) for x in answers), default=1.0),
        )
        key = (sum(g == h for g, h in pairs), label_kappa(pairs) or 0.0, margin)
        if best is None or key > best[0]:
            best = (key, c, k, p)
    assert best is not None
    (agree, kappa_4, margin), c, k, p = best
    lowest = [min(s.supported, default=0.0) for s in scores]
    best_s: tuple[Any, ...] | None = None
    for t in _cuts(lowest):
        chosen = Thresholds(t, c, k, p)
        pairs_b = [(label(s, chosen).correct, h == "correct") for s, h in zip(scores, hands, strict=True)]
        key_s = (sum(a == b for a, b in pairs_b), min((_margin(x, t) for x in lowest), default=1.0))
        if best_s is None or key_s > best_s[0]:
            best_s = (key_s, t)
    assert best_s is not None
    thresholds = Thresholds(round(best_s[1], 4), round(c, 4), round(k, 4), round(p, 4))
    return thresholds, {"rows": len(rows), "same_label": agree, "kappa_4_labels": kappa_4, "margin": margin}


def agreement(rows: list[dict[str, Any]], thresholds: Thresholds) -> dict[str, Any]:
    """Both judges against the hand on `rows`: the model's four labels against the hand's (accuracy,
    Cohen's kappa, confusion table), and each judge's "correct" against the hand's."""
    verdicts = [label(r["scores"], thresholds) for r in rows]
    hand_correct = [r["hand"] == "correct" for r in rows]
    hand_useful = [r["hand"] in ("correct", "partly") for r in rows]
    four = [(v.answer, r["hand"]) for v, r in zip(verdicts, rows, strict=True)]
    return {
        "replies": len(rows),
        "confusion": {
            hand: {
                model: sum(
                    r["hand"] == hand and v.answer == model for v, r in zip(verdicts, rows, strict=True)
                )
                for model in ANSWER_LABELS
            }
            for hand in ANSWER_LABELS
        },
        "exact": sum(a == b for a, b in four),
        "accuracy": sum(a == b for a, b in four) / len(four) if four else None,
        "kappa_4_labels": label_kappa(four),
        "model_correct_vs_hand_correct": binary(
            [(v.correct, h) for v, h in zip(verdicts, hand_correct, strict=True)]
        ),
        "model_answer_correct_vs_hand_correct": binary(
            [(v.answer == "correct", h) for v, h in zip(verdicts, hand_correct, strict=True)]
        ),
        "model_useful_vs_hand_useful": binary(
            [(v.answer in ("correct", "partly"), h) for v, h in zip(verdicts, hand_useful, strict=True)]
        ),
        "lexical_correct_vs_hand_correct": binary(
            [(r["lexical_correct"], h) for r, h in zip(rows, hand_correct, strict=True)]
        ),
        "lexical_correct_vs_hand_useful": binary(
            [(r["lexical_correct"], h) for r, h in zip(rows, hand_useful, strict=True)]
        ),
        "rows": [
            {
                "task_id": r["task_id"],
                "half": r["half"],
                "hand": r["hand"],
                "model_answer": v.answer,
                "model_supported": v.supported,
                "model_correct": v.correct,
                "lexical_correct": r["lexical_correct"],
                "lexical_supported": r["lexical_supported"],
                "scores": {
                    "supported": [round(x, 4) for x in r["scores"].supported],
                    "contradicts": [round(x, 4) for x in r["scores"].contradicts],
                    "key_point": round(r["scores"].key_point, 4),
                    "answers": round(r["scores"].answers, 4),
                },
                "seconds": r["scores"].seconds,
                "prompt_tokens": r["scores"].prompt_tokens,
                "cached": r["scores"].cached,
            }
            for v, r in zip(verdicts, rows, strict=True)
        ],
    }


def binary_row(name: str, b: dict[str, Any]) -> str:
    k = "n/a" if b["kappa"] is None else f"{b['kappa']:.2f}"
    return (
        f"| {name} | {b['agree']} of {b['of']} | {b['both_yes']} | {b['judge_yes_hand_no']} "
        f"| {b['judge_no_hand_yes']} | {k} |"
    )


def agreement_lines(v: dict[str, Any]) -> list[str]:
    k4 = "n/a" if v["kappa_4_labels"] is None else f"{v['kappa_4_labels']:.2f}"
    return [
        "| hand verdict \\ model judge's answer | " + " | ".join(ANSWER_LABELS) + " |",
        "| --- |" + " ---: |" * len(ANSWER_LABELS),
        *(
            f"| {hand} | " + " | ".join(str(v["confusion"][hand][m]) for m in ANSWER_LABELS) + " |"
            for hand in ANSWER_LABELS
        ),
        "",
        f"Same label as the hand: {v['exact']} of {v['replies']}; Cohen's kappa over the four labels {k4}.",
        "",
        "| judge's yes vs the hand's yes | agree | both yes | judge yes, hand no | judge no, hand yes | kappa |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        binary_row("model: correct and supported / hand: correct", v["model_correct_vs_hand_correct"]),
        binary_row("model: answer correct / hand: correct", v["model_answer_correct_vs_hand_correct"]),
        binary_row("model: correct or partly / hand: correct or partly", v["model_useful_vs_hand_useful"]),
        binary_row("lexical: correct / hand: correct", v["lexical_correct_vs_hand_correct"]),
        binary_row("lexical: correct / hand: correct or partly", v["lexical_correct_vs_hand_useful"]),
        "",
    ]


def run_lines(name: str, result: dict[str, Any]) -> list[str]:
    """One recorded run's answered replies per half, by the model judge (with the lexical judge beside)."""
    columns = {
        "first half (tuned on)": result["halves"]["first"],
        "second half (unseen)": result["halves"]["second"],
    }
    columns["all"] = result["all"]

    def row(title: str, key: str) -> str:
        return f"| {title} | " + " | ".join(str(b["model_judge"][key]) for b in columns.values()) + " |"

    return [
        f"### {name}",
        "",
        "| answered replies | " + " | ".join(columns) + " |",
        "| --- |" + " ---: |" * len(columns),
        row("answered", "answered"),
        row("judged by the model (the rest: its deadline passed)", "judged"),
        row("model judge: correct", "correct"),
        row("model judge: partly", "partly"),
        row("model judge: not answering", "not_answering"),
        row("model judge: wrong", "wrong"),
        row("model judge: a sentence not supported by the reference passages", "unsupported"),
        row("model judge: correct and supported", "correct_and_supported"),
        "| lexical judge: correct (bench/mtrag_judge.py), of all answered | "
        + " | ".join(str(b["judge"]["correct"]) for b in columns.values())
        + " |",
        "",
    ]


def timing(judge: ModelJudge) -> dict[str, Any]:
    """Each distinct reply judged in this invocation once, with its time and load as recorded when the
    model was asked about it."""
    entries = [judge.cache.entries[key] for key in sorted(judge.used)]
    seconds = [float(e["seconds"]) for e in entries]
    tokens = [int(e["prompt_tokens"]) for e in entries]
    loads = [float(e["load_1m"]) for e in entries]
    return {
        "replies_timed": len(entries),
        "seconds_median": statistics.median(seconds) if seconds else None,
        "seconds_p95": percentile(seconds, 95) if seconds else None,
        "seconds_max": max(seconds, default=None),
        "prompt_tokens_median": statistics.median(tokens) if tokens else None,
        "load_1m_median": statistics.median(loads) if loads else None,
        "load_1m_max": max(loads, default=None),
    }


def cost_text(t: dict[str, Any]) -> str:
    """The time per reply as recorded when the model was asked, with the load beside it."""
    if not t["replies_timed"]:
        return "no reply timed"
    return (
        f"{t['replies_timed']} distinct replies, as timed when the model was asked: median "
        f"{t['seconds_median']:.1f} s, p95 {t['seconds_p95']:.1f} s, max {t['seconds_max']:.1f} s per reply, "
        f"median {t['prompt_tokens_median']} prompt tokens evaluated per reply, 1-minute load average when "
        f"asked median {t['load_1m_median']:.2f}, max {t['load_1m_max']:.2f}"
    )


def comparison_line(v: dict[str, Any]) -> str:
    """The two judges side by side on one half: their "correct" against the hand's, and the model's four
    labels."""

    def k(b: dict[str, Any]) -> str:
        return "n/a" if b["kappa"] is None else f"{b['kappa']:.2f}"

    k4 = "n/a" if v["kappa_4_labels"] is None else f"{v['kappa_4_labels']:.2f}"
    return (
        f"Side by side: correct against the hand's correct, kappa {k(v['model_correct_vs_hand_correct'])} for "
        f"the model judge and {k(v['lexical_correct_vs_hand_correct'])} for the lexical judge; correct or "
        f"partly against the hand's, {k(v['model_useful_vs_hand_useful'])} for the model judge and "
        f"{k(v['lexical_correct_vs_hand_useful'])} for the lexical judge's correct; the model judge's four "
        f"labels, accuracy {v['exact']} of {v['replies']}, kappa {k4} (the lexical judge gives no four labels)."
    )


def describe() -> str:
    return (
        f"The model judge (`bench/mtrag_model_judge.py`, prompt version {PROMPT_VERSION}): "
        f"Qwen2.5-Coder-1.5B-Instruct Q4_K_M through llama-cpp-python, n_threads 2, n_ctx {N_CTX}. It asks "
        "yes/no questions (per reply sentence: supported by the reference passages? contradicts the reference "
        "answer? per reply: the key point of the reference answer present? answers the question itself?) and "
        "reads P(yes) / (P(yes) + P(no)) from the next-token logits, nothing sampled. It reads the question, "
        f"the data set's gold answer(s) and the task's gold reference passages (up to {PASSAGE_TOKENS} tokens "
        "of the sentences nearest each reply sentence and the gold answer), never Keel's retrieval, "
        "embeddings or grounding checks."
    )


def thresholds_line(t: Thresholds) -> str:
    return (
        f"Thresholds (set on the sample's first half only): wrong when a sentence's contradiction score "
        f">= {t.contradicts}; else correct when the key-point score >= {t.correct}; else partly when the larger "
        f"of the key-point and answers scores >= {t.partly}; else not answering. Supported when every "
        f"sentence's support score >= {t.supported}."
    )


def tune_main(args: argparse.Namespace) -> None:
    """Ask about the first half of the sample only, and set the thresholds on it."""
    tasks = read_tasks(args.data)
    load_before = os.getloadavg()
    judge, load_s = load_judge(model_path(), args.cache)
    started = time.perf_counter()
    rows = sample_rows(judge, tasks, json.loads(HANDCHECK.read_text()), ("first",))
    elapsed = time.perf_counter() - started
    thresholds, fit = tune(rows)
    first = agreement(rows, thresholds)
    lines = [
        describe(),
        "",
        f"Tuning on the hand-checked sample's first half only ({len(rows)} replies; the second half is neither "
        "asked about nor read here).",
        "",
        thresholds_line(thresholds),
        "",
        *agreement_lines(first),
        f"Model load {load_s:.1f} s; {elapsed / 60:.1f} min in this invocation; {cost_text(timing(judge))}; "
        f"1/5/15-min load average {', '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())} after, on a 2-core machine shared with other work.",
    ]
    write_results(
        TUNING,
        {
            "prompt_version": PROMPT_VERSION,
            "thresholds": thresholds.__dict__,
            "fit": fit,
            "first_half": first,
            "timing": timing(judge),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },
        "\n".join(lines),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", default="copilot_mtrag", help="a copilot MTRAG run in bench/results")
    parser.add_argument("--name", default="copilot_mtrag_model_judge")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--tune", action="store_true", help="set thresholds on the sample's first half only")
    parser.add_argument(
        "--deadline-min",
        type=float,
        default=None,
        help="minutes for the recorded runs' replies after the hand-checked sample (always judged whole); past it, "
        "only cached scores (the rest unjudged)",
    )
    args = parser.parse_args()
    if args.tune:
        tune_main(args)
        return

    recorded = json.loads((RESULTS / f"{args.results}.json").read_text())
    tasks = read_tasks(args.data)
    load_before = os.getloadavg()
    judge, load_s = load_judge(model_path(), args.cache)
    started = time.perf_counter()
    handcheck = json.loads(HANDCHECK.read_text())
    halves = {
        half: agreement(sample_rows(judge, tasks, handcheck, (half,)), THRESHOLDS)
        for half in ("first", "second")
    }
    sample_timing = timing(judge)
    if args.deadline_min is not None:  # the sample is always judged whole: the deadline is the runs'
        judge.deadline = time.monotonic() + args.deadline_min * 60
    verdicts = [v for result in recorded["models"].values() for v in judge_run(result, tasks, judge)]
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()
    cost = {**costs(verdicts, load_s), "sample": sample_timing, "all_judged": timing(judge)}
    t = cost["all_judged"]

    lines = [
        describe(),
        "",
        thresholds_line(THRESHOLDS),
        "",
        "## Against the hand-checked sample (`copilot_mtrag_handcheck.json`, 30 answered replies)",
        "",
        f"### Second half (unseen: not used to set anything; {halves['second']['replies']} replies)",
        "",
        *agreement_lines(halves["second"]),
        comparison_line(halves["second"]),
        "",
        f"### First half (the thresholds were set on it; {halves['first']['replies']} replies)",
        "",
        *agreement_lines(halves["first"]),
        f"## The recorded run `{args.results}.json` ({recorded['measured_at']})",
        "",
        *(line for name, result in recorded["models"].items() for line in run_lines(name, result)),
        "## Cost",
        "",
        f"Model load {load_s:.1f} s; {cost_text(t)}; {elapsed / 60:.1f} min in this invocation; "
        f"1/5/15-min load average {', '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{', '.join(f'{x:.2f}' for x in load_after)} after, "
        "on a 2-core machine shared with other work.",
    ]
    write_results(
        args.name,
        {
            "results": args.results,
            "results_measured_at": recorded["measured_at"],
            "prompt_version": PROMPT_VERSION,
            "thresholds": THRESHOLDS.__dict__,
            "validation": halves,
            "runs": {
                name: {
                    "halves": {h: result["halves"][h]["model_judge"] for h in ("first", "second")},
                    "all": result["all"]["model_judge"],
                    "verdicts": [
                        {"task_id": e["task_id"], "half": e["half"], **e["model_judge"]}
                        for e in result["examples"]
                        if "model_judge" in e
                    ],
                }
                for name, result in recorded["models"].items()
            },
            "cost": cost,
            "load_average_before": load_before,
            "load_average_after": load_after,
        },
        "\n".join(lines),
    )


if __name__ == "__main__":
    main()
