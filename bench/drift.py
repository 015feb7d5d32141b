"""Drift monitors: false alarms without a shift, and detection of real shifts, per monitor.

    .venv/bin/python -m bench.drift [--pairs 200] [--seed 7] [--cache FILE]

Traffic is simulated from public data, embedded with Keel's local embedding model (once per run;
`--cache` keeps the vectors in a file for the next run):
- queries: banking77 customer utterances are the usual traffic; the shifts are MTRAG `govt` user turns
  and SciFact claims (another source of questions altogether). A quarter of banking77 is held apart as an
  FAQ knowledge base: a query's retrieval top score is its best cosine similarity to it.
- intents: Keel's intent classifier (the shipped examples) on those same queries.
- groundedness, reply statuses, escalations and negative feedback are drawn from stated distributions
  (a reply of 1 + Poisson(1.5) sentences, each supported with a Beta-distributed probability).

Every pool is split in halves. On the tuning half, each monitor's minimum window is the smallest size
of a grid where, at the configured p-value and effect thresholds, the monitor's tuning shift (the first
listed) is detected in at least 95 % of 600 window pairs and no-shift pairs alarm in at most 5 %. The
evaluation half then reports false alarms and detection at the defaults in
`keel.config.DRIFT_MONITOR_DEFAULTS`, which were set from the tuning half; nothing is tuned on the
evaluation half. Both windows of a pair hold the same number of observations: the minimum window, the
least data a monitor may alert on. Smaller shifts are also reported at the window cap (what a monitor
sees once traffic fills its windows: `embedding_samples` vectors, `max_samples` other observations).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.harness import write_results
from keel.config import DriftMonitorSettings, DriftSettings, packaged_embedding_model
from keel.copilot.intents import IntentClassifier
from keel.evals.drift import Comparison, decide, distribution_test, mix_test, mmd_test, rate_test
from keel.evals.drift_watch import rule
from keel.gateway.providers.local_embedding import LocalEmbeddingProvider

DATA = Path("../shared/data")
GRID = [50, 75, 100, 150, 200, 300, 400, 500, 600, 700, 800, 1000, 1200, 1500, 2000]
MAX_FALSE_ALARMS = 0.05
# The target on the evaluation half is 90 %; tuning asks 95 % (on 600 pairs, a standard error of about
# one point) so that a borderline window size does not carry its luck over to the evaluation half.
TUNING_DETECTION = 0.95
# Drawn pools large enough that their halves hold the stated rates to about 0.1 point: a 10-point rise
# must not become 9.3 points by the luck of one draw.
SYNTHETIC = 400_000
Array = npt.NDArray[Any]


def unique(texts: list[str]) -> list[str]:
    return list(dict.fromkeys(t.strip().strip('"').strip() for t in texts if t.strip()))


def load_texts(banking_rows: int, scifact_rows: int, rng: np.random.Generator) -> dict[str, list[str]]:
    with (DATA / "intents/banking77_train.csv").open(encoding="utf-8") as f:
        banking = unique([row["text"] for row in csv.DictReader(f)])
    mtrag = []
    for line in (DATA / "support_qa/mtrag_govt_dev.jsonl").read_text(encoding="utf-8").splitlines():
        mtrag += [turn["text"] for turn in json.loads(line)["input"] if turn["speaker"] == "user"]
    scifact = [
        json.loads(line)["text"]
        for line in (DATA / "scifact/queries.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    pick = lambda texts, n: [texts[i] for i in sorted(rng.permutation(len(texts))[:n])]  # noqa: E731
    return {
        "banking77": pick(banking, banking_rows),
        "mtrag_govt": unique(mtrag),
        "scifact": pick(unique(scifact), scifact_rows),
    }


class MemoEmbedder:
    """Keel's embedding model behind a dictionary: every text is embedded once per run."""

    def __init__(self, model: LocalEmbeddingProvider) -> None:
        self._model = model
        self.vectors: dict[str, Array] = {}

    @property
    def model_id(self) -> str:
        return self._model.model_id

    def fill(self, texts: list[str]) -> None:
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self._model.embed(missing), strict=True))

    def embed(self, texts: list[str]) -> Array:
        self.fill(texts)
        return np.stack([self.vectors[t] for t in texts])


def halves(values: Array, rng: np.random.Generator) -> tuple[Array, Array]:
    order = rng.permutation(len(values))
    middle = len(values) // 2
    return values[order[:middle]], values[order[middle:]]


@dataclass
class Monitor:
    """One monitor's data: the usual traffic's halves, the shifts' halves, and its test."""

    name: str
    test_name: str
    settings: DriftMonitorSettings
    test: Callable[[Array, Array], Comparison]
    usual: tuple[Array, Array]
    # Name -> (tuning half, evaluation half) of the shifted traffic; the first one tunes.
    shifts: dict[str, tuple[Array, Array]]
    # Shifts too small for the minimum window, also measured at the window cap.
    small: tuple[str, ...] = ()


def draw(pool: Array, n: int, rng: np.random.Generator) -> Array:
    return pool[rng.choice(len(pool), n, replace=n > len(pool))]


def rates(
    monitor: Monitor, n: int, half: int, shift: str | None, pairs: int, rng: np.random.Generator
) -> float:
    """Share of window pairs that alert: both windows from the usual pool, or the recent one shifted."""
    rule_ = rule(monitor.settings.model_copy(update={"min_samples": n}))
    usual = monitor.usual[half]
    alerts = 0
    for _ in range(pairs):
        if shift is None:
            # Two disjoint windows of the same pool when it is large enough.
            both = (
                draw(usual, 2 * n, rng)
                if 2 * n > len(usual)
                else usual[rng.choice(len(usual), 2 * n, replace=False)]
            )
            baseline, recent = both[:n], both[n:]
        else:
            baseline, recent = draw(usual, n, rng), draw(monitor.shifts[shift][half], n, rng)
        alerts += decide(monitor.test(baseline, recent), rule_) == "drift"
    return alerts / pairs


def tune(monitor: Monitor, pairs: int, rng: np.random.Generator, ceiling: int) -> dict[str, Any]:
    tuning_shift = next(iter(monitor.shifts))
    for n in [size for size in GRID if size <= ceiling]:
        detection = rates(monitor, n, 0, tuning_shift, pairs, rng)
        if detection < TUNING_DETECTION:
            continue
        false_alarms = rates(monitor, n, 0, None, pairs, rng)
        if false_alarms <= MAX_FALSE_ALARMS:
            return {"min_samples": n, "detection": detection, "false_alarms": false_alarms}
    return {"min_samples": None, "detection": None, "false_alarms": None}


def groundedness_pool(rng: np.random.Generator, size: int, support: tuple[float, float]) -> Array:
    sentences = 1 + rng.poisson(1.5, size=size)
    probability = rng.beta(*support, size=size)
    return rng.binomial(sentences, probability) / sentences  # type: ignore[no-any-return]


def categorical_pool(rng: np.random.Generator, size: int, shares: dict[str, float]) -> Array:
    return rng.choice(np.array(list(shares)), size=size, p=np.array(list(shares.values())))


def build_monitors(
    vectors: dict[str, Array], intents: dict[str, Array], settings: DriftSettings, rng: np.random.Generator
) -> list[Monitor]:
    monitors = settings.monitors
    permutations = settings.permutations
    banking = vectors["banking77"]
    # A quarter of banking77 is the FAQ knowledge base; the rest is the traffic.
    order = rng.permutation(len(banking))
    kb, traffic_index = banking[order[: len(banking) // 4]], order[len(banking) // 4 :]
    top = {name: np.max(v @ kb.T, axis=1) for name, v in vectors.items()}
    top["banking77"] = top["banking77"][traffic_index]
    split = {name: halves(np.arange(len(top[name])), np.random.default_rng(1)) for name in top}

    def by_half(values: Array, name: str) -> tuple[Array, Array]:
        return values[split[name][0]], values[split[name][1]]

    traffic = {
        name: vectors[name][traffic_index] if name == "banking77" else vectors[name] for name in vectors
    }
    traffic_intents = {
        name: intents[name][traffic_index] if name == "banking77" else intents[name] for name in intents
    }

    def mixture(fraction: float) -> tuple[Array, Array]:
        # Half-and-half pools: a window drawn from one holds the fraction of other-source queries.
        parts = []
        for h in (0, 1):
            usual, other = (
                by_half(traffic["banking77"], "banking77")[h],
                by_half(traffic["mtrag_govt"], "mtrag_govt")[h],
            )
            k = round(fraction * 2000)
            parts.append(np.vstack([draw(usual, 2000 - k, rng), draw(other, k, rng)]))
        return parts[0], parts[1]

    # The permutations are seeded as the monitors in Keel seed them (one fixed seed).
    embed_test = lambda x, y: mmd_test(x, y, permutations=permutations)  # noqa: E731
    statuses = {"answered": 0.55, "escalated": 0.30, "needs_clarification": 0.15}
    risen = {"answered": 0.45, "escalated": 0.40, "needs_clarification": 0.15}
    return [
        Monitor(
            "query_embeddings",
            "mmd",
            monitors.query_embeddings,
            embed_test,
            by_half(traffic["banking77"], "banking77"),
            {
                "half of the recent queries from MTRAG govt": mixture(0.5),
                "MTRAG govt questions": by_half(traffic["mtrag_govt"], "mtrag_govt"),
                "SciFact claims": by_half(traffic["scifact"], "scifact"),
                "20 % from MTRAG govt": mixture(0.2),
                "30 % from MTRAG govt": mixture(0.3),
            },
            ("20 % from MTRAG govt",),
        ),
        Monitor(
            "retrieval_top_score",
            "ks",
            monitors.retrieval_top_score,
            distribution_test,
            by_half(top["banking77"], "banking77"),
            {
                "top score 0.1 lower": tuple(h - 0.1 for h in by_half(top["banking77"], "banking77")),  # type: ignore[dict-item]
                "MTRAG govt questions": by_half(top["mtrag_govt"], "mtrag_govt"),
                "top score 0.05 lower": tuple(h - 0.05 for h in by_half(top["banking77"], "banking77")),  # type: ignore[dict-item]
            },
            ("top score 0.05 lower",),
        ),
        Monitor(
            "groundedness",
            "ks",
            monitors.groundedness,
            distribution_test,
            halves(groundedness_pool(rng, SYNTHETIC, (8, 2)), rng),
            {
                "supported share 0.1 lower (mean 0.8 to 0.7)": halves(
                    groundedness_pool(rng, SYNTHETIC, (7, 3)), rng
                ),
                "supported share 0.05 lower": halves(groundedness_pool(rng, SYNTHETIC, (7.5, 2.5)), rng),
            },
            ("supported share 0.05 lower",),
        ),
        Monitor(
            "intent_mix",
            "chi2",
            monitors.intent_mix,
            mix_test,
            by_half(traffic_intents["banking77"], "banking77"),
            {
                "MTRAG govt questions": by_half(traffic_intents["mtrag_govt"], "mtrag_govt"),
                "SciFact claims": by_half(traffic_intents["scifact"], "scifact"),
            },
        ),
        Monitor(
            "status_mix",
            "chi2",
            monitors.status_mix,
            mix_test,
            halves(categorical_pool(rng, SYNTHETIC, statuses), rng),
            {"escalated 10 points more (0.30 to 0.40)": halves(categorical_pool(rng, SYNTHETIC, risen), rng)},
        ),
        Monitor(
            "escalation_rate",
            "two_proportion",
            monitors.escalation_rate,
            rate_test,
            halves(rng.random(SYNTHETIC) < 0.30, rng),
            {"10 points more (0.30 to 0.40)": halves(rng.random(SYNTHETIC) < 0.40, rng)},
        ),
        Monitor(
            "negative_feedback_rate",
            "two_proportion",
            monitors.negative_feedback_rate,
            rate_test,
            halves(rng.random(SYNTHETIC) < 0.15, rng),
            {
                "10 points more (0.15 to 0.25)": halves(rng.random(SYNTHETIC) < 0.25, rng),
                "5 points more (0.15 to 0.20)": halves(rng.random(SYNTHETIC) < 0.20, rng),
            },
            ("5 points more (0.15 to 0.20)",),
        ),
    ]


def embed_texts(texts: dict[str, list[str]], cache: Path | None, memo: MemoEmbedder) -> dict[str, Array]:
    everything = [t for group in texts.values() for t in group]
    key = hashlib.sha256(json.dumps([memo.model_id, everything]).encode()).hexdigest()[:16]
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as saved:
            if str(saved["key"]) == key:
                memo.vectors.update(zip(everything, saved["vectors"], strict=True))
    memo.fill(everything)
    if cache is not None:
        np.savez(cache, key=key, vectors=np.stack([memo.vectors[t] for t in everything]))
    return {name: np.stack([memo.vectors[t] for t in group]) for name, group in texts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=200, help="window pairs per reported cell")
    parser.add_argument(
        "--tuning-pairs", type=int, default=600, help="window pairs per cell when tuning (less noise)"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--banking", type=int, default=4000, help="banking77 utterances used")
    parser.add_argument("--scifact", type=int, default=600, help="SciFact claims used")
    parser.add_argument("--cache", type=Path, default=None, help="keep the embeddings in this .npz file")
    args = parser.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    settings = DriftSettings()

    texts = load_texts(args.banking, args.scifact, rng)
    model = LocalEmbeddingProvider(packaged_embedding_model(), batch_size=64)
    model.warm_up()
    memo = MemoEmbedder(model)
    embed_started = time.perf_counter()
    vectors = embed_texts(texts, args.cache, memo)
    embed_seconds = time.perf_counter() - embed_started
    with tempfile.TemporaryDirectory() as models_dir:
        classifier = IntentClassifier(memo, Path(models_dir))  # type: ignore[arg-type]
        intents = {
            name: np.array([classifier.classify(t).intent for t in group]) for name, group in texts.items()
        }
    monitors = build_monitors(vectors, intents, settings, rng)

    results: dict[str, Any] = {}
    for monitor in monitors:
        ceiling = settings.embedding_samples if monitor.name == "query_embeddings" else settings.max_samples

        # Each monitor and phase draws from its own seeded generator, so one monitor's defaults never
        # change what another's tuning sees.
        def phase(number: int, name: str = monitor.name) -> np.random.Generator:
            return np.random.default_rng([args.seed, zlib.crc32(name.encode()), number])

        tuned = tune(monitor, args.tuning_pairs, phase(0), ceiling)
        evaluating, capped = phase(1), phase(2)
        n = monitor.settings.min_samples
        evaluation: dict[str, Any] = {"false_alarms": rates(monitor, n, 1, None, args.pairs, evaluating)}
        evaluation["detection"] = {
            shift: rates(monitor, n, 1, shift, args.pairs, evaluating) for shift in monitor.shifts
        }
        if monitor.small:
            cap: dict[str, Any] = {"window": ceiling}
            cap["false_alarms"] = rates(monitor, ceiling, 1, None, args.pairs, capped)
            cap |= {shift: rates(monitor, ceiling, 1, shift, args.pairs, capped) for shift in monitor.small}
            evaluation["at_cap"] = cap
        results[monitor.name] = {
            "test": monitor.test_name,
            "rule": monitor.settings.model_dump(),
            "pool_sizes": {"usual": [len(h) for h in monitor.usual]}
            | {shift: [len(h) for h in pair] for shift, pair in monitor.shifts.items()},
            "tuning_shift": next(iter(monitor.shifts)),
            "tuned": tuned,
            "evaluation": evaluation,
        }
        print(monitor.name, json.dumps(results[monitor.name]["tuned"]), json.dumps(evaluation), flush=True)

    load = os.getloadavg()
    data = {
        "pairs": args.pairs,
        "tuning_pairs": args.tuning_pairs,
        "seed": args.seed,
        "texts": {name: len(group) for name, group in texts.items()},
        "embedding_seconds": round(embed_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "load_average": load,
        "permutations": settings.permutations,
        "monitors": results,
    }
    write_results("drift", data, table(data))


def table(data: dict[str, Any]) -> str:
    lines = [
        f"{data['pairs']} window pairs per cell; both windows of a pair hold the monitor's minimum window "
        "(its default `min_samples`), the least data it may alert on. Tuned on one half of every pool; "
        "reported on the other half.",
        "",
        "| monitor | test | min window (default / tuned) | false alarms, no shift | shift | detection |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in data["monitors"].items():
        first = True
        for shift, detection in r["evaluation"]["detection"].items():
            lead = (
                f"| {name} | {r['test']} | {r['rule']['min_samples']} / {r['tuned']['min_samples']} | "
                f"{100 * r['evaluation']['false_alarms']:.1f} % |"
                if first
                else "| | | | |"
            )
            lines.append(f"{lead} {shift} | {100 * detection:.1f} % |")
            first = False
    lines += ["", "At the window cap (a monitor's windows full), the smaller shifts:", ""]
    lines += [
        "| monitor | window | false alarms, no shift | shift | detection |",
        "| --- | --- | --- | --- | --- |",
    ]
    for name, r in data["monitors"].items():
        cap = r["evaluation"].get("at_cap")
        if cap:
            for shift, detection in cap.items():
                if shift not in ("window", "false_alarms"):
                    lines.append(
                        f"| {name} | {cap['window']} | {100 * cap['false_alarms']:.1f} % | {shift} | {100 * detection:.1f} % |"
                    )
    lines += [
        "",
        f"Alert rule: p-value below each monitor's `p_value` (0.01) and the effect at least its `min_effect`; "
        f"MMD with {data['permutations']} permutations. Texts embedded: {data['texts']} in "
        f"{data['embedding_seconds']} s; whole run {data['total_seconds']} s; load average "
        f"{', '.join(f'{v:.2f}' for v in data['load_average'])}.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
