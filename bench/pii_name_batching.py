"""Name finding one text a call against combined batches: same findings, CPU per text.

    .venv/bin/python -m bench.pii_name_batching [--texts 1200]

Texts: banking77 customer messages and Presidio's synthetic PII sentences (../shared/data), each with a
number appended so no text repeats. Three ways through the same spaCy model: one `detect` a text on one
thread (how the guard called it before), 16 threads each calling `detect` (the gateway at 16 in flight:
their texts combine into batches), and the trace redactor's batches (`ContentRedactor.attributes_many`
over export batches of 40 spans). Findings must be identical text for text. CPU is the process's.
Writes bench/results/pii_name_batching.{json,md}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.harness import RESULTS, machine
from keel.guard.pii import PiiDetector, PiiSpan
from keel.guard.pii_policy import ContentRedactor

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def texts(count: int) -> list[str]:
    with (DATA / "intents" / "banking77_train.csv").open() as handle:
        banking = [row[0] for row in csv.reader(handle)][1:]
    presidio = [
        row["full_text"] for row in json.loads((DATA / "pii" / "presidio_synth_dev.json").read_text())
    ]
    mixed = [text for pair in zip(banking, presidio * 40, strict=False) for text in pair]
    return [f"{text} (ref {i})" for i, text in enumerate(mixed[:count])]


def fresh() -> PiiDetector:
    detector = PiiDetector(remember=0)  # nothing remembered: every text is scanned
    detector.warm_up()
    detector.detect("Warm up with Sarah Johnson.")
    return detector


def timed(run: Any) -> tuple[Any, float]:
    started = time.process_time()
    result = run()
    return result, time.process_time() - started


def shape(found: list[PiiSpan]) -> list[tuple[str, int, int]]:
    return [(s.type, s.start, s.end) for s in found]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=1200)
    args = parser.parse_args()
    sample = texts(args.texts)
    load_before = os.getloadavg()
    alone_detector = fresh()
    alone, alone_s = timed(lambda: [alone_detector.detect(t) for t in sample])
    threaded_detector = fresh()
    with ThreadPoolExecutor(16) as pool:
        threaded, threaded_s = timed(lambda: list(pool.map(threaded_detector.detect, sample)))
    redactor = ContentRedactor(fresh())
    spans = [{"gen_ai.prompt": [t]} for t in sample]
    redacted, redacted_s = timed(
        lambda: [r for i in range(0, len(spans), 40) for r in redactor.attributes_many(spans[i : i + 40])]
    )
    one_by_one = ContentRedactor(fresh())
    expected_redacted = [one_by_one.attributes(s) for s in spans[:200]]
    data = {
        "benchmark": "pii_name_batching",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "texts": len(sample),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu_ms_per_text": {
            "one detect a text, one thread": round(alone_s / len(sample) * 1000, 3),
            "detect from 16 threads (combined batches)": round(threaded_s / len(sample) * 1000, 3),
            "trace redactor, export batches of 40 spans": round(redacted_s / len(sample) * 1000, 3),
        },
        "identical_findings_16_threads": sum(
            shape(a) == shape(b) for a, b in zip(alone, threaded, strict=True)
        ),
        "identical_redactions_first_200": sum(
            a == b for a, b in zip(expected_redacted, redacted, strict=False)
        ),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pii_name_batching.json").write_text(json.dumps(data, indent=1) + "\n")
    lines = [
        "# pii_name_batching",
        "",
        f"Measured {data['measured_at']} on {data['machine']}; {len(sample)} texts (banking77 and Presidio's "
        "synthetic set, numbered), no findings remembered. 1-min load average "
        f"{load_before[0]:.2f} before, {data['load_average_after'][0]:.2f} after: CPU time per text, which "
        "load inflates less than wall time but does not leave untouched.",
        "",
        "| how the texts reach the name model | CPU ms per text |",
        "| --- | ---: |",
        *(f"| {name} | {value} |" for name, value in data["cpu_ms_per_text"].items()),
        "",
        f"Findings identical to one call a text: {data['identical_findings_16_threads']} of {len(sample)} "
        f"(16 threads); trace redactions identical to one span at a time: "
        f"{data['identical_redactions_first_200']} of 200.",
    ]
    (RESULTS / "pii_name_batching.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
