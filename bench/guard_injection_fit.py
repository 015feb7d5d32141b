"""Fits Keel's shipped injection model on the train part of `bench/guard_injection_data.py`'s split,
chooses its C, Platt scaling and decision thresholds on the tune part, and writes it to
`src/keel/guard/data/injection_model.npz`. The test part is never read here.

    .venv/bin/python -m bench.guard_injection_fit [--cache .keel/bench/injection_vectors.npz]

Thresholds come from false-positive targets on tune (rule hits count against them, and cannot be tuned
away): the API refuses from the lowest score at which at most BLOCK_FPR of ordinary prompts (banking77 questions, BIPIA's tasks
asked directly, deepset's benign rows) and
BLOCK_TRIGGER_FPR of benign prompts with trigger words would be refused; the copilot escalates from the
lowest at which at most ESCALATE_FPR of either would be; a passage sentence is neutralised from the
lowest at which at most PASSAGE_FPR of clean passages would be touched.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.guard_injection_data import (
    SPLIT_SEED,
    Labeled,
    Part,
    Passage,
    message_sets,
    passage_sets,
    split_record,
)
from keel.config import packaged_embedding_model
from keel.gateway.providers.local_embedding import LocalEmbeddingProvider
from keel.guard.injection_model import (
    PROBE,
    Head,
    InjectionModel,
    Thresholds,
    candidate_rows,
    fit_head,
    platt,
)
from keel.guard.injection_plan import _plan
from keel.guard.injection_rules import match_rule

Array = npt.NDArray[np.float64]
MODEL = Path("src/keel/guard/data/injection_model.npz")
CACHE = Path(".keel/bench/injection_vectors.npz")
BLOCK_FPR, BLOCK_TRIGGER_FPR = 0.01, 0.02
ESCALATE_FPR, ESCALATE_TRIGGER_FPR = 0.03, 0.05
PASSAGE_FPR = 0.02
C_GRID = (0.03, 0.06, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0)


class StoredEmbedder:
    """Keel's embedding model behind a file: each distinct text is embedded once, ever (the vectors are
    the model's own; only repeated work is saved). Quality runs read it; latency is timed on the model."""

    def __init__(self, model: LocalEmbeddingProvider, path: Path) -> None:
        self._model = model
        self._path = path
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}
        self._dirty = 0
        if path.is_file():
            with np.load(path, allow_pickle=False) as saved:
                if str(saved["model"]) == model.model_id:
                    self._vectors = dict(zip(saved["texts"].tolist(), saved["vectors"], strict=True))

    is_ready = True
    dimensions = 384

    @property
    def model_id(self) -> str:
        return self._model.model_id

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        for start in range(0, len(missing), 512):
            batch = missing[start : start + 512]
            self._vectors.update(zip(batch, self._model.embed(batch), strict=True))
            self._dirty += len(batch)
            if self._dirty >= 2048:
                self.save()
            print(f"  embedded {start + len(batch)}/{len(missing)} new texts", flush=True)
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._vectors[t] for t in texts])

    async def aembed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        return self.embed(texts)

    async def acount_tokens(self, texts: list[str]) -> int:
        return await self._model.acount_tokens(texts)

    async def acount_input_tokens(self, texts: list[str]) -> list[int]:
        return await self._model.acount_input_tokens(texts)

    def save(self) -> None:
        if not self._dirty:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        texts = list(self._vectors)
        np.savez(
            self._path,
            model=np.array(self._model.model_id),
            texts=np.array(texts),
            vectors=np.stack([self._vectors[t] for t in texts]),
        )
        self._dirty = 0


Labels = npt.NDArray[np.int_]


def message_rows(texts: Sequence[Labeled], embed: Callable[[list[str]], Any]) -> tuple[Array, Labels]:
    """Training rows of messages: every candidate of a benign text is a negative; an injection's
    windows (or its single piece) are positives, its separate sentences left out (which of them is the
    injection is not known)."""
    plans = [_plan(row.text, True) for row in texts]
    vectors = np.asarray(embed([p for plan in plans for p in plan.pieces]), dtype=np.float64)
    rows, labels, offset = [], [], 0
    for row, plan in zip(texts, plans, strict=True):
        own = vectors[offset : offset + len(plan.pieces)]
        offset += len(plan.pieces)
        candidates = candidate_rows(own, plan.pieces, plan.scored, plan.windows)
        keep = [
            i for i, piece in enumerate(candidates.pieces) if row.label == 0 or piece < 0 or not plan.windows
        ]
        rows.append(candidates.rows[keep])
        labels += [row.label] * len(keep)
    return np.vstack(rows), np.asarray(labels)


def passage_rows(passages: Sequence[Passage], embed: Callable[[list[str]], Any]) -> tuple[Array, Labels]:
    """Training rows of passages, one per scored sentence: a sentence overlapping the inserted attack is
    a positive; every sentence of a clean passage a negative (the clean sentences of a poisoned one
    repeat those, and are left out)."""
    plans = [_plan(p.text, True) for p in passages]
    vectors = np.asarray(embed([piece for plan in plans for piece in plan.pieces]), dtype=np.float64)
    rows, labels, offset = [], [], 0
    for passage, plan in zip(passages, plans, strict=True):
        own = vectors[offset : offset + len(plan.pieces)]
        offset += len(plan.pieces)
        candidates = candidate_rows(own, plan.pieces, plan.scored, plan.windows, include_windows=False)
        for i, piece in enumerate(candidates.pieces):
            members = [piece] if piece >= 0 else [m for m, _ in plan.windows[-1 - piece]]
            start, end = plan.spans[members[0]][0], plan.spans[members[-1]][1]
            inside = passage.attack is not None and start < passage.attack[1] and passage.attack[0] < end
            if passage.attack is None or inside:
                rows.append(candidates.rows[i])
                labels.append(int(inside))
    return np.stack(rows), np.asarray(labels)


def average_precision(scores: Array, labels: Labels) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(labels, scores))


def lowest_threshold(
    scores: dict[str, Array], rules: dict[str, npt.NDArray[np.bool_]], limits: dict[str, float]
) -> float:
    """The lowest score from which each named benign set's flagged share (rule hits included) stays
    within its limit."""
    candidates = sorted({round(float(s), 4) for values in scores.values() for s in values} | {1.0})
    for threshold in candidates:
        if all(np.mean(rules[name] | (scores[name] >= threshold)) <= limit for name, limit in limits.items()):
            return threshold
    return 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=CACHE)
    parser.add_argument("--out", type=Path, default=MODEL)
    args = parser.parse_args()
    model = LocalEmbeddingProvider(packaged_embedding_model(), batch_size=64)
    model.warm_up()
    store = StoredEmbedder(model, args.cache)
    started = time.perf_counter()
    messages = message_sets()
    passages = passage_sets()
    try:
        head_m, head_p, thresholds, report = fit(messages.sets, passages, store.embed)
    finally:
        store.save()
    probe = model.embed([PROBE])[0].astype(np.float64)
    meta = {
        "split_seed": SPLIT_SEED,
        "fitted_on": "train part of bench/guard_injection_data.py; C, Platt and thresholds on tune",
        "targets": {
            "block_fpr": BLOCK_FPR,
            "block_trigger_fpr": BLOCK_TRIGGER_FPR,
            "escalate_fpr": ESCALATE_FPR,
            "escalate_trigger_fpr": ESCALATE_TRIGGER_FPR,
            "passage_fpr": PASSAGE_FPR,
        },
        **report,
    }
    InjectionModel(head_m, head_p, thresholds, probe, meta).save(args.out)
    print(json.dumps({**meta, "split": split_record()}, indent=2, default=str))
    print(f"fitted in {time.perf_counter() - started:.0f} s; written to {args.out}")


def _pick_head(
    train: tuple[Array, Labels], tune: tuple[Array, Labels], name: str
) -> tuple[Head, dict[str, Any]]:
    best: tuple[float, float, Head] | None = None
    tried = {}
    for c in C_GRID:
        head = fit_head(*train, c)
        ap = average_precision(head.probabilities(tune[0]), tune[1])
        tried[str(c)] = round(ap, 4)
        if best is None or ap > best[0]:
            best = (ap, c, head)
    assert best is not None
    print(f"{name}: tune average precision by C {tried}; chose C={best[1]}", flush=True)
    return platt(best[2], *tune), {"c": best[1], "tune_average_precision_by_c": tried}


def _message_scores(head: Head, texts: Sequence[Labeled], embed: Callable[[list[str]], Any]) -> Array:
    plans = [_plan(row.text, True) for row in texts]
    vectors = np.asarray(embed([p for plan in plans for p in plan.pieces]), dtype=np.float64)
    scores, offset = [], 0
    for plan in plans:
        own = vectors[offset : offset + len(plan.pieces)]
        offset += len(plan.pieces)
        rows = candidate_rows(own, plan.pieces, plan.scored, plan.windows).rows
        scores.append(float(np.max(head.probabilities(rows))))
    return np.asarray(scores)


def _passage_scores(head: Head, passages: Sequence[Passage], embed: Callable[[list[str]], Any]) -> Array:
    plans = [_plan(p.text, True) for p in passages]
    vectors = np.asarray(embed([piece for plan in plans for piece in plan.pieces]), dtype=np.float64)
    scores, offset = [], 0
    for plan in plans:
        own = vectors[offset : offset + len(plan.pieces)]
        offset += len(plan.pieces)
        rows = candidate_rows(own, plan.pieces, plan.scored, plan.windows, include_windows=False).rows
        scores.append(float(np.max(head.probabilities(rows))) if len(rows) else 0.0)
    return np.asarray(scores)


def fit(
    messages: dict[Part, dict[str, list[Labeled]]],
    passages: dict[Part, dict[str, list[Passage]]],
    embed: Callable[[list[str]], Any],
) -> tuple[Head, Head, Thresholds, dict[str, Any]]:
    train_m = [row for rows in messages["train"].values() for row in rows]
    tune_m = [row for rows in messages["tune"].values() for row in rows]
    print(f"messages: {len(train_m)} train, {len(tune_m)} tune", flush=True)
    head_m, report_m = _pick_head(message_rows(train_m, embed), message_rows(tune_m, embed), "message head")

    train_p = [p for rows in passages["train"].values() for p in rows]
    tune_p = [p for rows in passages["tune"].values() for p in rows]
    print(f"passages: {len(train_p)} train, {len(tune_p)} tune", flush=True)
    head_p, report_p = _pick_head(passage_rows(train_p, embed), passage_rows(tune_p, embed), "passage head")

    tune = messages["tune"]
    benign = {
        "ordinary": tune["ordinary"] + tune["requests"] + [r for r in tune["deepset"] if r.label == 0],
        "trigger_words": tune["trigger_words"],
    }
    scores = {name: _message_scores(head_m, rows, embed) for name, rows in benign.items()}
    rules = {name: np.array([match_rule(r.text) is not None for r in rows]) for name, rows in benign.items()}
    block = lowest_threshold(scores, rules, {"ordinary": BLOCK_FPR, "trigger_words": BLOCK_TRIGGER_FPR})
    escalate = lowest_threshold(
        scores, rules, {"ordinary": ESCALATE_FPR, "trigger_words": ESCALATE_TRIGGER_FPR}
    )
    clean = passages["tune"]["clean_emails"] + passages["tune"]["clean_pages"]
    clean_scores = {"clean": _passage_scores(head_p, clean, embed)}
    clean_rules = {"clean": np.array([match_rule(p.text) is not None for p in clean])}
    passage = lowest_threshold(clean_scores, clean_rules, {"clean": PASSAGE_FPR})
    thresholds = Thresholds(block=block, escalate=min(escalate, block), passage=passage)
    print(f"thresholds chosen on tune: {thresholds}", flush=True)
    return head_m, head_p, thresholds, {"message_head": report_m, "passage_head": report_p}


if __name__ == "__main__":
    main()
