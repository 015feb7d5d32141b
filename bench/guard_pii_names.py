"""Person names in sentence shapes the detector was not built on: recall of PERSON (and how often a name
is only partly covered), plus false positives on sentences without a name.

    .venv/bin/python -m bench.guard_pii_names

Names are the PERSON values of Presidio's synthetic set; the sentence shapes are Keel's own, written for
this bench, none of them one of the three shapes the personal-data policy test sends ("{name} here.",
"I spoke with {name} yesterday", "Tell {name} that ..."), which are known to the rules. Both are split by a seeded hash (`SPLIT_SEED`) into a dev half, which the name rules may be
developed against, and a test half, which is only reported. The name-free sentences are banking77
customer messages (a seeded sample).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from bench.harness import percentile, write_results
from keel.guard.pii import PiiDetector

DATA = Path("../shared/data")
SPLIT_SEED = "keel-pii-names-v1"
TEMPLATES = [
    "Please forward this to {name}.",
    "{name} called about the refund.",
    "Can {name} pick up the bike on Friday?",
    "This is {name} from accounting.",
    "Thanks, {name}!",
    "According to {name}, the invoice is wrong.",
    "The order was placed by {name}.",
    "Hi, it's {name} again.",
    "{name} and I share the account.",
    "My colleague {name} will sign for it.",
    "Ask {name} to call me back.",
    "I'm writing on behalf of {name}.",
    "Send the receipt to {name}, please.",
    "{name} said the delivery was late.",
    "Did {name} approve the return?",
    "Hello {name}, your order has shipped.",
    "The technician, {name}, never showed up.",
    "I met {name} at the store last week.",
    "Can you check what {name} ordered?",
    "{name}'s account was charged twice.",
    "Please cancel the subscription for {name}.",
    "I was helped by {name} on the phone.",
    "Update the delivery name to {name}.",
    "Kind regards,\n{name}",
    "Greetings from {name}.",
    "{name} is my husband and he paid.",
    "We need {name} to confirm the address.",
    "Yesterday {name} emailed me the tracking number.",
    "Is {name} still working in your support team?",
    "Contact person: {name}",
    "Customer {name} wants a refund.",
    "Our manager {name} disagrees.",
    "I'd like to speak to {name}.",
    "Message from {name}: where is my parcel?",
    "Could {name} be added as a second user?",
    "{name} here, following up on ticket 4471.",
    "Leave it with the neighbour, {name}.",
]


def _half(kind: str, units: list[str]) -> dict[str, list[str]]:
    ordered = sorted(units, key=lambda u: hashlib.sha256(f"{SPLIT_SEED}:{kind}:{u}".encode()).hexdigest())
    return {"dev": ordered[: len(ordered) // 2], "test": ordered[len(ordered) // 2 :]}


def names() -> dict[str, list[str]]:
    rows = json.loads((DATA / "pii" / "presidio_synth_dev.json").read_text(encoding="utf-8"))
    values = sorted(
        {s["entity_value"].strip() for r in rows for s in r["spans"] if s["entity_type"] == "PERSON"}
    )
    return _half("names", [v for v in values if v and "\n" not in v])


def sentences(part: str) -> list[tuple[str, tuple[int, int]]]:
    """Each template of the part with each name of the part, in turn (one name per template use)."""
    templates, people = _half("templates", TEMPLATES)[part], names()[part]
    out = []
    for i, name in enumerate(people):
        for j in range(2):
            template = templates[(2 * i + j) % len(templates)]
            start = template.index("{name}")
            out.append((template.format(name=name), (start, start + len(name))))
    return out


def evaluate(detector: PiiDetector, part: str) -> dict[str, Any]:
    found = whole = 0
    timings = []
    items = sentences(part)
    missed: list[str] = []
    for text, (start, end) in items:
        started = time.perf_counter()
        spans = [s for s in detector.detect(text) if s.type == "PERSON"]
        timings.append((time.perf_counter() - started) * 1000)
        hit = [s for s in spans if s.start < end and start < s.end]
        found += bool(hit)
        whole += any(s.start <= start and end <= s.end for s in hit)
        if not hit and len(missed) < 15:
            missed.append(text)
    return {
        "n": len(items),
        "recall": found / len(items),
        "whole_name_recall": whole / len(items),
        "p95_ms": percentile(timings, 95),
        "missed_examples": missed,
    }


def false_positives(detector: PiiDetector, count: int = 500) -> dict[str, Any]:
    rows = list(csv.DictReader((DATA / "intents" / "banking77_train.csv").open(encoding="utf-8")))
    texts = _half("banking", [r["text"] for r in rows])["test"][:count]
    flagged = [t for t in texts if any(s.type == "PERSON" for s in detector.detect(t))]
    return {"n": len(texts), "flagged": len(flagged) / len(texts), "examples": flagged[:10]}


def main() -> None:
    detector = PiiDetector()
    detector.warm_up()
    load = os.getloadavg()
    data: dict[str, Any] = {
        "split_seed": SPLIT_SEED,
        "templates": _half("templates", TEMPLATES),
        "dev": evaluate(detector, "dev"),
        "test": evaluate(detector, "test"),
        "no_name_sentences": false_positives(detector),
        "load_average": load,
    }
    dev, test, fp = data["dev"], data["test"], data["no_name_sentences"]
    table = "\n".join(
        [
            f"Names of Presidio's synthetic set in Keel's own sentence shapes, split by `{SPLIT_SEED}`: the "
            "name rules may be developed on dev; test templates and names are only reported.",
            "",
            "| part | sentences | PERSON found | whole name covered | p95 ms |",
            "| --- | --- | --- | --- | --- |",
            f"| dev | {dev['n']} | {dev['recall']:.3f} | {dev['whole_name_recall']:.3f} | {dev['p95_ms']:.1f} |",
            f"| test | {test['n']} | {test['recall']:.3f} | {test['whole_name_recall']:.3f} | {test['p95_ms']:.1f} |",
            "",
            f"Name-free banking77 messages with a PERSON finding: {100 * fp['flagged']:.1f} % of {fp['n']}. "
            f"Load average {load[0]:.2f}.",
        ]
    )
    write_results("guard_pii_names", data, table)


if __name__ == "__main__":
    main()
