"""The passage check's embedding batches do not change its decisions: on the tune part of the split
`keel-guard-injection-v1`, the verdicts of the detector on the embedding model itself (batches bounded
by padded tokens, repeated pieces embedded once) against its verdicts on the vectors the shipped model
was fitted and tuned on (`.keel/bench/injection_vectors.npz`, written by `bench.guard_injection_fit`).

    .venv/bin/python -m bench.guard_passage_batching [--cache FILE] [--per-passage 60]

Compared twice: all tune passages in one call, and a fixed sample one passage per call (as a reply
checks them). The test part is not read.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import numpy as np

from bench.guard_injection_data import SPLIT_SEED, passage_sets
from bench.guard_injection_fit import CACHE, StoredEmbedder
from bench.harness import write_results
from keel.config import packaged_embedding_model
from keel.gateway.providers.local_embedding import LocalEmbeddingProvider
from keel.guard.injection import InjectionDetector, PassageVerdict


def _compared(reference: list[PassageVerdict], measured: list[PassageVerdict]) -> dict[str, Any]:
    same = [
        (r.is_injection, r.spans, r.tier) == (m.is_injection, m.spans, m.tier)
        for r, m in zip(reference, measured, strict=True)
    ]
    return {
        "n": len(same),
        "same_decisions": sum(same),
        "max_score_difference": max(abs(r.score - m.score) for r, m in zip(reference, measured, strict=True)),
        "flagged": sum(m.is_injection for m in measured),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--per-passage", type=int, default=60)
    args = parser.parse_args()
    model = LocalEmbeddingProvider(packaged_embedding_model(), batch_size=32)
    model.warm_up()
    texts = [p.text for rows in passage_sets()["tune"].values() for p in rows]
    reference = InjectionDetector(StoredEmbedder(model, args.cache)).check_passages(texts)
    one_call = InjectionDetector(model).check_passages(texts)
    sample = np.random.default_rng(17).permutation(len(texts))[: args.per_passage]
    alone = InjectionDetector(model)
    per_passage = [alone.check_passages([texts[i]])[0] for i in sample]
    data = {
        "split": SPLIT_SEED,
        "part": "tune",
        "reference_flagged": sum(v.is_injection for v in reference),
        "all_in_one_call": _compared(reference, one_call),
        "one_passage_per_call": _compared([reference[i] for i in sample], per_passage),
        "load_average_after": os.getloadavg(),
    }
    write_results("guard_passage_batching", data, _table(data))


def _table(data: dict[str, Any]) -> str:
    lines = [
        f"Tune part of `{data['split']}`: passage verdicts on the embedding model as shipped against those "
        f"on the vectors the passage head was fitted and tuned on ({data['reference_flagged']} flagged "
        "there). Same decision: the same flag, tier and neutralised spans.",
        "",
        "| how the passages were checked | passages | same decision | largest score difference | flagged |",
        "| --- | --- | --- | --- | --- |",
    ]
    for key, label in (("all_in_one_call", "all in one call"), ("one_passage_per_call", "one per call")):
        row = data[key]
        lines.append(
            f"| {label} | {row['n']} | {row['same_decisions']} | {row['max_score_difference']:.1e} "
            f"| {row['flagged']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
