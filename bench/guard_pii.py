"""PII detection quality and speed on Presidio's synthetic set (500 sentences with gold spans).

Run: `.venv/bin/python -m bench.guard_pii`. A predicted span is correct when it overlaps a gold span of
the same (mapped) type; a gold span is found when some predicted span of its type overlaps it. Reports
per-type precision and recall for the full detector and for the pattern-only one (`ner=False`), plus
latency per text (p50/p95) after warm-up.

Dataset types mapped onto Keel's: PERSON -> PERSON, STREET_ADDRESS -> ADDRESS, CREDIT_CARD -> CARD,
PHONE_NUMBER -> PHONE, EMAIL_ADDRESS -> EMAIL, IBAN_CODE -> IBAN, US_SSN -> SSN, IP_ADDRESS -> IP.
Not covered by Keel: GPE (a city or country alone), ORGANIZATION, DATE_TIME, TITLE, AGE, NRP, ZIP_CODE
(alone; a postcode after a street address is taken into the address), DOMAIN_NAME, US_DRIVER_LICENSE.
A prediction that overlaps only such a span counts as a false positive.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.harness import percentile, write_results
from keel.guard.pii import PiiDetector

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "pii" / "presidio_synth_dev.json"
MAPPING = {
    "PERSON": "PERSON",
    "STREET_ADDRESS": "ADDRESS",
    "CREDIT_CARD": "CARD",
    "PHONE_NUMBER": "PHONE",
    "EMAIL_ADDRESS": "EMAIL",
    "IBAN_CODE": "IBAN",
    "US_SSN": "SSN",
    "IP_ADDRESS": "IP",
}
TYPES = ["PERSON", "ADDRESS", "CARD", "PHONE", "EMAIL", "IBAN", "SSN", "IP"]


def _overlaps(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def evaluate(detector: PiiDetector, examples: list[dict[str, Any]]) -> dict[str, Any]:
    gold_n, found, predicted, correct = Counter[str](), Counter[str](), Counter[str](), Counter[str]()
    latencies: list[float] = []
    for example in examples:
        started = time.perf_counter()
        spans = detector.detect(example["full_text"])
        latencies.append((time.perf_counter() - started) * 1000)
        gold = [
            (MAPPING[g["entity_type"]], g["start_position"], g["end_position"])
            for g in example["spans"]
            if g["entity_type"] in MAPPING
        ]
        preds = [(s.type, s.start, s.end) for s in spans]
        for g in gold:
            gold_n[g[0]] += 1
            found[g[0]] += any(_overlaps(p, g) for p in preds)
        for p in preds:
            predicted[p[0]] += 1
            correct[p[0]] += any(_overlaps(p, g) for g in gold)
    per_type = {
        kind: {
            "gold": gold_n[kind],
            "predicted": predicted[kind],
            "precision": correct[kind] / predicted[kind] if predicted[kind] else None,
            "recall": found[kind] / gold_n[kind] if gold_n[kind] else None,
        }
        for kind in TYPES
    }
    micro = {
        "precision": sum(correct.values()) / max(1, sum(predicted.values())),
        "recall": sum(found.values()) / max(1, sum(gold_n.values())),
    }
    latency = {"p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95)}
    return {"per_type": per_type, "micro": micro, "latency": latency}


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def main() -> None:
    examples = json.loads(DATA.read_text())
    load_average = os.getloadavg()[0]  # latency on a shared 2-core machine depends on what else runs
    full = PiiDetector()
    started = time.perf_counter()
    full.warm_up()
    load_s = time.perf_counter() - started
    results = {"full": evaluate(full, examples), "patterns_only": evaluate(PiiDetector(ner=False), examples)}
    rows = [
        "| type | gold | predicted | precision | recall | precision (no NER) | recall (no NER) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for kind in TYPES:
        f, p = results["full"]["per_type"][kind], results["patterns_only"]["per_type"][kind]
        rows.append(
            f"| {kind} | {f['gold']} | {f['predicted']} | {_fmt(f['precision'])} | {_fmt(f['recall'])} "
            f"| {_fmt(p['precision'])} | {_fmt(p['recall'])} |"
        )
    fm, pm = results["full"]["micro"], results["patterns_only"]["micro"]
    rows.append(
        f"| all (micro) | | | {fm['precision']:.3f} | {fm['recall']:.3f} | {pm['precision']:.3f} | {pm['recall']:.3f} |"
    )
    fl, pl = results["full"]["latency"], results["patterns_only"]["latency"]
    table = "\n".join(rows) + (
        f"\n\nLatency per text: p50 {fl['p50_ms']:.2f} ms, p95 {fl['p95_ms']:.2f} ms with NER; "
        f"p50 {pl['p50_ms']:.2f} ms, p95 {pl['p95_ms']:.2f} ms patterns only. "
        f"Model load (warm_up): {load_s:.2f} s; 1-minute load average at start {load_average:.1f}. "
        f"{len(examples)} texts, overlap matching, "
        "dataset types mapped as in the module docstring."
    )
    write_results(
        "guard_pii",
        {
            "dataset": "presidio_synth_dev.json",
            "texts": len(examples),
            "load_s": load_s,
            "load_average": load_average,
            **results,
        },
        table,
    )


if __name__ == "__main__":
    main()
