"""The model judge (bench/mtrag_model_judge.py) checked against the hand-checked sample and applied to the
answered replies a copilot MTRAG run recorded:

    .venv/bin/python -m bench.mtrag_model_judge_run [--results copilot_mtrag] [--name copilot_mtrag_model_judge]
        [--data ../shared/data/support_qa/mtrag_govt_dev.jsonl] [--cache PATH.json]

The recorded runs hold each reply, its task id and half, but not the gold answers or passages: those are read
again from the data set by task id. `bench/copilot_mtrag.py --model-judge` calls `judge_runs` on a fresh run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, percentile, write_results
from bench.mtrag_judge import judge as lexical_judge
from bench.mtrag_model_judge import (
    ANSWER_LABELS,
    PROMPT_VERSION,
    GoldTask,
    ModelJudge,
    ModelVerdict,
    load_judge,
    model_path,
    read_tasks,
)

DATA = Path("../shared/data/support_qa/mtrag_govt_dev.jsonl")
CACHE = RESULTS / "copilot_mtrag_model_judge_cache.json"
HANDCHECK = RESULTS / "copilot_mtrag_handcheck.json"


def summarise(verdicts: list[ModelVerdict], unjudged: int = 0) -> dict[str, Any]:
    """Per answer label, the unsupported ones, and the issue's measure: judged correct and supported.
    `unjudged`: answered replies left without a verdict (the run's deadline passed)."""
    labels = Counter(v.answer for v in verdicts)
    return {
        "answered": len(verdicts) + unjudged,
        "judged": len(verdicts),
        **{label.replace(" ", "_"): labels.get(label, 0) for label in ANSWER_LABELS},
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
    """The load, and the time per verdict as each was measured when the model was asked (cached ones too)."""
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
        f"median {cost['seconds_median']:.1f} s, p95 {cost['seconds_p95']:.1f} s per verdict asked"
        if cost["seconds_median"] is not None
        else "none judged"
    )
    return (
        f"Model judge (bench/mtrag_model_judge.py): load {cost['load_s']:.1f} s; {cost['judged']} answered replies "
        f"judged, {cost['asked_model']} asked of the model now, {cost['from_cache']} from the cache ({per})."
    )


def kappa(pairs: list[tuple[bool, bool]]) -> float | None:
    """Cohen's kappa of two yes/no raters: agreement beyond what their base rates give by chance."""
    n = len(pairs)
    if not n:
        return None
    observed = sum(a == b for a, b in pairs) / n
    first, second = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    chance = first * second + (1 - first) * (1 - second)
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


def validate(judge: ModelJudge, tasks: dict[str, GoldTask], handcheck: dict[str, Any]) -> dict[str, Any]:
    """Both judges against the hand verdicts of the sample: the model's four labels against the hand's,
    and each judge's "correct" against the hand's "correct"."""
    rows = []
    for row in handcheck["replies"]:
        task = tasks[row["task_id"]]
        verdict = judge.judge(task, row["reply"])
        if verdict is None:
            continue  # past the deadline: the sample is reported on the verdicts given
        lexical = lexical_judge(row["reply"], task.golds, task.passages)
        rows.append(
            {
                "task_id": row["task_id"],
                "half": row["half"],
                "hand": row["verdict"],
                "model_answer": verdict.answer,
                "model_supported": verdict.supported,
                "model_correct": verdict.correct,
                "lexical_correct": lexical.correct,
                "lexical_supported": lexical.supported,
                "seconds": verdict.seconds,
                "cached": verdict.cached,
            }
        )
    hand_correct = [r["hand"] == "correct" for r in rows]  # rows: the sample's replies with a verdict
    hand_useful = [r["hand"] in ("correct", "partly") for r in rows]
    return {
        "sample": len(handcheck["replies"]),
        "rows": rows,
        "confusion": {
            hand: {
                model: sum(r["hand"] == hand and r["model_answer"] == model for r in rows)
                for model in ANSWER_LABELS
            }
            for hand in ANSWER_LABELS
        },
        "exact": sum(r["hand"] == r["model_answer"] for r in rows),
        "model_correct_vs_hand_correct": binary(
            [(r["model_correct"], h) for r, h in zip(rows, hand_correct, strict=True)]
        ),
        "model_answer_correct_vs_hand_correct": binary(
            [(r["model_answer"] == "correct", h) for r, h in zip(rows, hand_correct, strict=True)]
        ),
        "model_useful_vs_hand_useful": binary(
            [(r["model_answer"] in ("correct", "partly"), h) for r, h in zip(rows, hand_useful, strict=True)]
        ),
        "lexical_correct_vs_hand_correct": binary(
            [(r["lexical_correct"], h) for r, h in zip(rows, hand_correct, strict=True)]
        ),
        "lexical_correct_vs_hand_useful": binary(
            [(r["lexical_correct"], h) for r, h in zip(rows, hand_useful, strict=True)]
        ),
    }


def binary_row(label: str, b: dict[str, Any]) -> str:
    k = "n/a" if b["kappa"] is None else f"{b['kappa']:.2f}"
    return (
        f"| {label} | {b['agree']} of {b['of']} | {b['both_yes']} | {b['judge_yes_hand_no']} "
        f"| {b['judge_no_hand_yes']} | {k} |"
    )


def validation_lines(v: dict[str, Any]) -> list[str]:
    lines = [
        "| hand verdict \\ model judge's answer | " + " | ".join(ANSWER_LABELS) + " |",
        "| --- |" + " ---: |" * len(ANSWER_LABELS),
        *(
            f"| {hand} | " + " | ".join(str(v["confusion"][hand][m]) for m in ANSWER_LABELS) + " |"
            for hand in ANSWER_LABELS
        ),
        "",
        f"Same label as the hand: {v['exact']} of {len(v['rows'])}.",
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
    return lines


def run_lines(name: str, result: dict[str, Any]) -> list[str]:
    """One recorded run's answered replies per half, by the model judge (with the lexical judge beside)."""
    columns = {
        "first half (tuned on)": result["halves"]["first"],
        "second half (unseen)": result["halves"]["second"],
    }
    columns["all"] = result["all"]

    def row(label: str, key: str) -> str:
        return f"| {label} | " + " | ".join(str(b["model_judge"][key]) for b in columns.values()) + " |"

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
        row("model judge: a claim not supported by the reference passages", "unsupported"),
        row("model judge: correct and supported", "correct_and_supported"),
        "| lexical judge: correct (bench/mtrag_judge.py), of all answered | "
        + " | ".join(str(b["judge"]["correct"]) for b in columns.values())
        + " |",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--results", default="copilot_mtrag", help="a copilot MTRAG run in bench/results")
    parser.add_argument("--name", default="copilot_mtrag_model_judge")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument(
        "--deadline-min",
        type=float,
        default=None,
        help="after this, only cached verdicts (the rest unjudged)",
    )
    args = parser.parse_args()

    recorded = json.loads((RESULTS / f"{args.results}.json").read_text())
    tasks = read_tasks(args.data)
    load_before = os.getloadavg()
    judge, load_s = load_judge(model_path(), args.cache)
    started = time.perf_counter()
    if args.deadline_min is not None:
        judge.deadline = time.monotonic() + args.deadline_min * 60
    validation = validate(judge, tasks, json.loads(HANDCHECK.read_text()))
    verdicts = [v for result in recorded["models"].values() for v in judge_run(result, tasks, judge)]
    elapsed = time.perf_counter() - started
    load_after = os.getloadavg()
    cost = costs(verdicts, load_s)
    cost["validation_asked_model"] = sum(not r["cached"] for r in validation["rows"])
    # Each distinct verdict once (the sample's replies are among the run's): its time when it was asked.
    seconds = [float(judge.cache.entries[key]["seconds"]) for key in sorted(judge.used)]
    tokens = [int(judge.cache.entries[key]["prompt_tokens"]) for key in sorted(judge.used)]
    cost["prompt_tokens_median"] = statistics.median(tokens) if tokens else None
    cost["verdicts_timed"] = len(seconds)
    cost["seconds_median"] = statistics.median(seconds) if seconds else None
    cost["seconds_p95"] = percentile(seconds, 95) if seconds else None

    lines = [
        f"The model judge (`bench/mtrag_model_judge.py`, prompt version {PROMPT_VERSION}): "
        "Qwen2.5-Coder-1.5B-Instruct Q4_K_M through llama-cpp-python, temperature 0, n_threads 2, n_ctx 2048, "
        "its output held by a grammar to `answer: correct|partly|not answering|wrong` and `supported: yes|no`. "
        "It reads the question, the data set's gold answer(s) and the task's gold reference passages (cut to "
        "the lines nearest the reply and the gold answer when they do not fit), never Keel's retrieval, "
        "embeddings or grounding checks.",
        "",
        f"## Against the hand-checked sample ({len(validation['rows'])} of its {validation['sample']} answered "
        "replies judged, `copilot_mtrag_handcheck.json`)",
        "",
        *validation_lines(validation),
        f"## The recorded run `{args.results}.json` ({recorded['measured_at']})",
        "",
        *(line for name, result in recorded["models"].items() for line in run_lines(name, result)),
        "## Cost",
        "",
        f"Model load {load_s:.1f} s; {len(seconds)} distinct verdicts, as timed when the model was asked ("
        + (
            f"median {cost['seconds_median']:.1f} s, p95 {cost['seconds_p95']:.1f} s per verdict, "
            if seconds
            else ""
        )
        + f"median prompt {cost['prompt_tokens_median']} tokens; {cost['validation_asked_model']} of the sample's "
        f"and {cost['asked_model']} of the runs' asked in this invocation); {elapsed / 60:.1f} min in this "
        f"invocation; 1/5/15-min load average {', '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{', '.join(f'{x:.2f}' for x in load_after)} after, on a 2-core machine shared with other work.",
    ]
    write_results(
        args.name,
        {
            "results": args.results,
            "results_measured_at": recorded["measured_at"],
            "validation": validation,
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
