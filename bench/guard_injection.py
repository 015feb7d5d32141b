"""Prompt-injection detection on deepset/prompt-injections (train split, 546 rows, English and German).

    .venv/bin/python -m bench.guard_injection [--seed 13] [--data ../shared/data/injection/deepset_train.jsonl]

The file is split into a seeded, stratified 70/30 train/test split. On the test split it reports precision,
recall, F1 and the false-positive rate of: the rules alone; the classifier trained on the examples Keel
ships; the classifier trained on those plus the deepset train split; and rules + classifier (the shipped
configuration, the same with the deepset-trained classifier, and the shipped one with its threshold picked
for the best F1 on the train split, never the test split). No judge is plugged in, so the grey zone is
decided by the classifier score against the threshold (0.5 by default).

Latency of one `check()` (single text, warm, the test texts one by one, two passes) for the rules alone and
for rules + classifier (with and without sentence scoring), measured in the same run and taking turns on
each text, against the target of 20 ms p95. The classifier's cost is almost all the embedding of the text,
so the raw `embed([text])` latency is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.harness import percentile, write_results
from keel.config import packaged_embedding_model
from keel.gateway.providers.local_embedding import LocalEmbeddingProvider
from keel.guard.injection import InjectionDetector, InjectionSettings, InjectionVerdict, load_examples

DATA = Path("../shared/data/injection/deepset_train.jsonl")
TARGET_P95_MS = 20.0


def load(path: Path) -> list[tuple[str, int]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [(str(row["text"]), int(row["label"])) for row in rows]


def split(rows: list[tuple[str, int]], seed: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(rows, test_size=0.3, random_state=seed, stratify=[r[1] for r in rows])
    return list(train), list(test)


def metrics(verdicts: list[InjectionVerdict], labels: list[int]) -> dict[str, Any]:
    tp = sum(1 for v, y in zip(verdicts, labels, strict=True) if v.is_injection and y == 1)
    fp = sum(1 for v, y in zip(verdicts, labels, strict=True) if v.is_injection and y == 0)
    fn = sum(1 for v, y in zip(verdicts, labels, strict=True) if not v.is_injection and y == 1)
    tn = len(labels) - tp - fp - fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_positive_rate": fp / (fp + tn) if fp + tn else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "decided_by": dict(Counter(v.tier for v in verdicts)),
    }


def pick_threshold(detector: InjectionDetector, train: list[tuple[str, int]]) -> float:
    verdicts = detector.check_many([t for t, _ in train])
    labels = [y for _, y in train]

    def f1_at(threshold: float) -> float:
        decided = [
            InjectionVerdict(v.score, v.tier == "rules" or v.score >= threshold, v.tier, v.reason)
            for v in verdicts
        ]
        return float(metrics(decided, labels)["f1"])

    return max((round(0.05 * step, 2) for step in range(4, 15)), key=f1_at)


def timings_ms(
    calls: dict[str, Callable[[str], object]], texts: list[str], passes: int = 2
) -> dict[str, list[float]]:
    """Milliseconds per call; the calls take turns on each text, so load from elsewhere hits them alike."""
    values: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(passes):
        for text in texts:
            for name, call in calls.items():
                started = time.perf_counter()
                call(text)
                values[name].append((time.perf_counter() - started) * 1000)
    return values


def latency_row(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": percentile(values, 50), "p95_ms": percentile(values, 95)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()

    train, test = split(load(args.data), args.seed)
    texts, labels = [t for t, _ in test], [y for _, y in test]
    embedder = LocalEmbeddingProvider(packaged_embedding_model(), batch_size=32)
    embedder.warm_up()
    no_rules = InjectionSettings(rules_enabled=False)
    with tempfile.TemporaryDirectory() as tmp:
        extra = Path(tmp) / "deepset_train_split.jsonl"
        extra.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in train))
        cache = Path(tmp) / "cache"
        detectors = {
            "rules only": InjectionDetector(None),
            "classifier (shipped examples)": InjectionDetector(embedder, cache_dir=cache, settings=no_rules),
            "classifier (shipped + deepset train split)": InjectionDetector(
                embedder, cache_dir=cache, settings=no_rules, extra_examples=extra
            ),
            "rules + classifier (shipped configuration)": InjectionDetector(embedder, cache_dir=cache),
            "rules + classifier (shipped), sentences not scored": InjectionDetector(
                embedder, cache_dir=cache, settings=InjectionSettings(sentences=False)
            ),
            "rules + classifier (shipped + deepset train split)": InjectionDetector(
                embedder, cache_dir=cache, extra_examples=extra
            ),
        }
        quality: dict[str, dict[str, Any]] = {}
        # The threshold is tuned on the train split only (best F1 of rules + shipped classifier there).
        tuned = pick_threshold(detectors["rules + classifier (shipped configuration)"], train)
        detectors[f"rules + classifier (shipped), threshold {tuned:.2f} picked on the train split"] = (
            InjectionDetector(embedder, cache_dir=cache, settings=InjectionSettings(threshold=tuned))
        )
        for name, detector in detectors.items():
            started = time.perf_counter()
            detector.warm_up()  # fits the classifier (embeds the training examples) on first use
            fit_s = time.perf_counter() - started
            started = time.perf_counter()
            verdicts = detector.check_many(texts)
            quality[name] = {
                **metrics(verdicts, labels),
                "fit_s": fit_s,
                "batch_s": time.perf_counter() - started,
            }
            print(name, {k: v for k, v in quality[name].items() if k != "decided_by"}, flush=True)

        shipped = detectors["rules + classifier (shipped configuration)"]
        no_sentences = detectors["rules + classifier (shipped), sentences not scored"]
        reached = [shipped.check(t).tier != "rules" for t in texts] * 2  # one entry per timed call
        embedder.embed(texts[:8])  # warm the model's first-call paths before timing
        load_before = os.getloadavg()[0]
        timed = timings_ms(
            {
                "rules only": detectors["rules only"].check,
                "rules + classifier (shipped configuration)": shipped.check,
                "rules + classifier, sentences not scored": no_sentences.check,
                "embedding alone, embed([text])": lambda t: embedder.embed([t]),
            },
            texts,
        )
        latency = {name: latency_row(values) for name, values in timed.items()}
        shipped_ms = timed["rules + classifier (shipped configuration)"]
        latency["rules + classifier (shipped), texts no rule caught"] = latency_row(
            [ms for ms, classified in zip(shipped_ms, reached, strict=True) if classified]
        )

    data = {
        "data": str(args.data),
        "seed": args.seed,
        "split": {"train": len(train), "test": len(test), "test_injections": sum(labels)},
        "shipped_examples": len(load_examples()),
        "settings": InjectionSettings().model_dump(),
        "threshold_picked_on_train_split": tuned,
        "quality": quality,
        "latency": latency,
        "latency_target_p95_ms": TARGET_P95_MS,
        "cpus": len(os.sched_getaffinity(0)),
        "load_average_1m": {"before_timing": load_before, "after_timing": os.getloadavg()[0]},
    }
    write_results("guard_injection", data, markdown(data))


def markdown(data: dict[str, Any]) -> str:
    split_ = data["split"]
    lines = [
        f"deepset/prompt-injections train file, stratified 70/30 split (seed {data['seed']}): "
        f"{split_['train']} train / {split_['test']} test rows ({split_['test_injections']} injections). "
        f"Shipped training examples: {data['shipped_examples']}. Threshold 0.5 unless named, no judge.",
        "",
        "| configuration | precision | recall | F1 | false-positive rate | TP | FP | FN | TN |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, m in data["quality"].items():
        lines.append(
            f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
            f"{m['false_positive_rate']:.3f} | {m['tp']} | {m['fp']} | {m['fn']} | {m['tn']} |"
        )
    lines += [
        "",
        f"Latency of one `check()` (single text, warm; target p95 <= {data['latency_target_p95_ms']:.0f} ms; "
        f"1-minute load average {data['load_average_1m']['before_timing']:.2f} before and "
        f"{data['load_average_1m']['after_timing']:.2f} after timing, on {data['cpus']} CPUs):",
        "",
        "| path | n | p50 ms | p95 ms | p95 within target |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, row in data["latency"].items():
        within = "yes" if row["p95_ms"] <= data["latency_target_p95_ms"] else "no"
        lines.append(f"| {name} | {row['n']} | {row['p50_ms']:.2f} | {row['p95_ms']:.2f} | {within} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
