"""Fits Keel's shipped injection model on the train part of `bench/guard_injection_data.py`'s split
(with the templated variants of `bench/guard_injection_variants.py`), chooses its C, Platt scaling and
decision thresholds on the tune part, and writes it to `src/keel/guard/data/injection_model.npz`. The
test part is never read here.

    .venv/bin/python -m bench.guard_injection_fit [--cache .keel/bench/injection_vectors.npz]
        [--refit-passages]   (else the passage head and its threshold are kept from the model in --out)
        [--with-packages [--skip-kinds in_the_wild,dan]]   (the packages' prompt collections in train
        and tune too: tried, not shipped, see guard_injection_public.py)

Each message decision is set from a precision target on tune, kept per benign population so no one of
them pays for the others (rule hits count against it and cannot be tuned away): the API refuses from the
lowest score (the most recall) at which no population in BLOCK_LIMITS has more than its share flagged,
the copilot escalates from the lowest within ESCALATE_LIMITS. C (and the weight of the structural features) is the most regularised whose
decisions catch, on both paths together, within TIE of the most tune injections. A passage sentence is neutralised from the lowest score at which at most
PASSAGE_FPR of clean passages would be touched.
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
    _banking,
    message_sets,
    passage_sets,
    split_record,
)
from bench.guard_injection_variants import variant_sets
from keel.config import packaged_embedding_model
from keel.gateway.providers.local_embedding import LocalEmbeddingProvider
from keel.guard.injection_model import (
    PROBE,
    Head,
    InjectionModel,
    Thresholds,
    candidate_rows,
    fit_head,
    message_candidates,
    platt,
)
from keel.guard.injection_plan import _plan
from keel.guard.injection_rules import match_rule

Array = npt.NDArray[np.float64]
MODEL = Path("src/keel/guard/data/injection_model.npz")
CACHE = Path(".keel/bench/injection_vectors.npz")
# The most of each benign tune population a path may flag: banking77 questions, BIPIA's tasks asked
# directly (with the packages' benign prompts: application prompts and plain requests, as few as three on
# tune), deepset's benign rows, banking questions with trigger words, the benign variants.
BLOCK_LIMITS = {
    "ordinary": 0.004,
    "requests": 0.15,
    "deepset_benign": 0.03,
    "trigger_words": 0.015,
    "variant_benign": 0.03,
}
ESCALATE_LIMITS = {
    "ordinary": 0.005,
    "requests": 0.25,
    "deepset_benign": 0.04,
    "trigger_words": 0.02,
    "variant_benign": 0.05,
}
PASSAGE_FPR = 0.02
C_GRID = (0.06, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
# The message head's structural columns are fitted multiplied by each of these (the weights are then
# scaled back): a lighter penalty on a few readable features than on 384 embedding dimensions.
FEATURE_SCALES = (1.0, 3.0, 10.0)
# Tune recall (refused plus escalated) within which a more regularised fit is preferred.
TIE = 0.02
EMBEDDING_DIMENSIONS = 384
# The tune sets whose injections count towards the choice of C.
ATTACK_SETS = ("deepset", "templated", "variant_attacks", "public_attacks")


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
Embed = Callable[[list[str]], Any]


def message_rows(texts: Sequence[Labeled], embed: Embed) -> tuple[Array, Labels]:
    """Training rows of messages: every candidate of a benign text is a negative; an injection's
    windows (or its single piece) are positives, its separate sentences left out (which of them is the
    injection is not known)."""
    plans = [_plan(row.text, True) for row in texts]
    vectors = np.asarray(embed([p for plan in plans for p in plan.pieces]), dtype=np.float64)
    rows, labels, offset = [], [], 0
    for row, plan in zip(texts, plans, strict=True):
        own = vectors[offset : offset + len(plan.pieces)]
        offset += len(plan.pieces)
        candidates = message_candidates(own, plan.pieces, plan.scored, plan.windows)
        keep = [
            i for i, piece in enumerate(candidates.pieces) if row.label == 0 or piece < 0 or not plan.windows
        ]
        rows.append(candidates.rows[keep])
        labels += [row.label] * len(keep)
    return np.vstack(rows), np.asarray(labels)


def passage_rows(passages: Sequence[Passage], embed: Embed) -> tuple[Array, Labels]:
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
    parser.add_argument("--refit-passages", action="store_true")
    parser.add_argument(
        "--with-packages", action="store_true", help="fit and tune also on the packages' collections"
    )
    parser.add_argument("--skip-kinds", default="", help="kinds of those left out, comma-separated")
    args = parser.parse_args()
    model = LocalEmbeddingProvider(packaged_embedding_model(), batch_size=64)
    model.warm_up()
    store = StoredEmbedder(model, args.cache)
    started = time.perf_counter()
    messages = message_sets(packages=args.with_packages, skip=tuple(filter(None, args.skip_kinds.split(","))))
    try:
        head_m, thresholds, report = fit_messages(messages.sets, variant_sets(_banking(500)), store.embed)
        if args.refit_passages:
            head_p, passage, report["passage_head"] = fit_passages(passage_sets(), store.embed)
        else:
            head_p, passage, report["passage_head"] = kept_passage_head(args.out)
    finally:
        store.save()
    probe = model.embed([PROBE])[0].astype(np.float64)
    meta = {
        "split_seed": SPLIT_SEED,
        "fitted_on": "train part of bench/guard_injection_data.py and bench/guard_injection_variants.py; "
        "C, Platt and thresholds on tune",
        "targets": {"block": BLOCK_LIMITS, "escalate": ESCALATE_LIMITS, "passage_fpr": PASSAGE_FPR},
        **report,
    }
    thresholds = Thresholds(thresholds.block, thresholds.escalate, passage)
    InjectionModel(head_m, head_p, thresholds, probe, meta).save(args.out)
    print(json.dumps({**meta, "split": split_record()}, indent=2, default=str))
    print(f"fitted in {time.perf_counter() - started:.0f} s; written to {args.out}")


def kept_passage_head(path: Path) -> tuple[Head, float, Any]:
    """The passage head, its threshold and its fitting report as the model at `path` holds them (read
    as arrays: the message head beside it may have been fitted on other features)."""
    with path.open("rb") as handle, np.load(handle, allow_pickle=False) as saved:
        head = saved["passage_head"]
        weights = np.asarray(saved["passage_weights"], dtype=np.float64)
        report = json.loads(str(saved["meta"])).get("passage_head", {})
        return (
            Head(weights, float(head[0]), (float(head[1]), float(head[2]))),
            float(saved["thresholds"][2]),
            report,
        )


def _scores(head: Head, texts: Sequence[Labeled], embed: Embed) -> Array:
    plans = [_plan(row.text, True) for row in texts]
    vectors = np.asarray(embed([p for plan in plans for p in plan.pieces]), dtype=np.float64)
    scores, offset = [], 0
    for plan in plans:
        own = vectors[offset : offset + len(plan.pieces)]
        offset += len(plan.pieces)
        rows = message_candidates(own, plan.pieces, plan.scored, plan.windows).rows
        scores.append(float(np.max(head.probabilities(rows))))
    return np.asarray(scores)


def _passage_scores(head: Head, passages: Sequence[Passage], embed: Embed) -> Array:
    plans = [_plan(p.text, True) for p in passages]
    vectors = np.asarray(embed([piece for plan in plans for piece in plan.pieces]), dtype=np.float64)
    scores, offset = [], 0
    for plan in plans:
        own = vectors[offset : offset + len(plan.pieces)]
        offset += len(plan.pieces)
        rows = candidate_rows(own, plan.pieces, plan.scored, plan.windows, include_windows=False).rows
        scores.append(float(np.max(head.probabilities(rows))) if len(rows) else 0.0)
    return np.asarray(scores)


def _tune_populations(tune: dict[str, list[Labeled]]) -> tuple[dict[str, list[Labeled]], list[Labeled]]:
    """The benign populations the limits name, and the injections, of the tune part."""
    benign = {
        "ordinary": tune["ordinary"],
        "requests": tune["requests"] + tune.get("public_benign", []),
        "deepset_benign": [r for r in tune["deepset"] if r.label == 0],
        "trigger_words": tune["trigger_words"],
        "variant_benign": tune["variant_benign"],
    }
    attacks = [r for name in ATTACK_SETS for r in tune.get(name, []) if r.label == 1]
    return benign, attacks


def _decisions(head: Head, tune: dict[str, list[Labeled]], embed: Embed) -> tuple[Thresholds, dict[str, Any]]:
    """Thresholds from the limits on tune, and what they catch there, per set."""
    benign, _ = _tune_populations(tune)
    scores = {name: _scores(head, rows, embed) for name, rows in benign.items()}
    rules = {name: np.array([match_rule(r.text) is not None for r in rows]) for name, rows in benign.items()}
    block = lowest_threshold(scores, rules, BLOCK_LIMITS)
    escalate = min(block, lowest_threshold(scores, rules, ESCALATE_LIMITS))
    caught: dict[str, Any] = {}
    for name in ATTACK_SETS:
        rows = [r for r in tune.get(name, []) if r.label == 1]
        if not rows:  # fitted without the packages' collections
            caught[name] = {"n": 0, "refused": 0.0, "escalated": 0.0}
            continue
        hit = np.array([match_rule(r.text) is not None for r in rows])
        s = _scores(head, rows, embed)
        caught[name] = {
            "n": len(rows),
            "refused": round(float(np.mean(hit | (s >= block))), 4),
            "escalated": round(float(np.mean(hit | (s >= escalate))), 4),
        }
    for name, values in scores.items():
        caught[f"{name}_flagged"] = {
            "n": len(values),
            "refused": round(float(np.mean(rules[name] | (values >= block))), 4),
            "escalated": round(float(np.mean(rules[name] | (values >= escalate))), 4),
        }
    return Thresholds(block=block, escalate=escalate), caught


def _scaled_fit(rows: Array, labels: Labels, c: float, scale: float) -> Head:
    """A head fitted with the structural columns multiplied by `scale`, returned for unscaled rows."""
    factors = np.ones(rows.shape[1])
    factors[EMBEDDING_DIMENSIONS:] = scale
    head = fit_head(rows * factors, labels, c)
    return Head(head.weights * factors, head.bias)


def fit_messages(
    messages: dict[Part, dict[str, list[Labeled]]],
    variants: dict[Part, dict[str, list[Labeled]]],
    embed: Embed,
) -> tuple[Head, Thresholds, dict[str, Any]]:
    """The message head: fitted on train for each C, Platt-scaled on tune; the C kept is the one whose
    tune decisions catch (refused and escalated together) within TIE of the most injections, the most
    regularised first."""
    train = [r for rows in (*messages["train"].values(), *variants["train"].values()) for r in rows]
    tune = {**messages["tune"], **variants["tune"]}
    tune_rows = [r for rows in tune.values() for r in rows]
    print(f"messages: {len(train)} train, {len(tune_rows)} tune", flush=True)
    train_xy, tune_xy = message_rows(train, embed), message_rows(tune_rows, embed)
    _, attacks = _tune_populations(tune)
    results: list[tuple[float, tuple[float, float], Head, Thresholds, dict[str, Any]]] = []
    tried: dict[str, Any] = {}
    for c, scale in ((c, scale) for c in C_GRID for scale in FEATURE_SCALES):
        head = platt(_scaled_fit(*train_xy, c, scale), *tune_xy)
        thresholds, caught = _decisions(head, tune, embed)
        n = sum(caught[name]["n"] for name in ATTACK_SETS)
        recall = tuple(
            sum(caught[name][path] * caught[name]["n"] for name in ATTACK_SETS) / n
            for path in ("refused", "escalated")
        )
        ap = average_precision(
            _scores(head, attacks + [r for r in tune_rows if r.label == 0], embed),
            np.asarray([1] * len(attacks) + [0] * sum(r.label == 0 for r in tune_rows)),
        )
        tried[f"C={c}, scale={scale}"] = {
            "tune_recall": [round(x, 4) for x in recall],
            "average_precision": round(ap, 4),
        }
        print(
            f"C={c} scale={scale}: tune recall refused/escalated {recall}, AP {ap:.4f}, {thresholds}",
            flush=True,
        )
        results.append((recall[0] + recall[1], (c, scale), head, thresholds, caught))
    # The most regularised of those within TIE of the best: a few tune texts do not buy a looser fit.
    top = max(result[0] for result in results)
    _, (c, scale), head, thresholds, caught = next(r for r in results if r[0] >= top - TIE)
    print(f"message head: chose C={c}, scale={scale}; thresholds {thresholds}; on tune {caught}", flush=True)
    report = {"c": c, "feature_scale": scale, "tried": tried, "tune_decisions": caught}
    return head, thresholds, {"message_head": report}


def fit_passages(passages: dict[Part, dict[str, list[Passage]]], embed: Embed) -> tuple[Head, float, Any]:
    """The passage head (C by tune average precision) and its threshold from PASSAGE_FPR on tune."""
    train_p = [p for rows in passages["train"].values() for p in rows]
    tune_p = [p for rows in passages["tune"].values() for p in rows]
    print(f"passages: {len(train_p)} train, {len(tune_p)} tune", flush=True)
    train_xy, tune_xy = passage_rows(train_p, embed), passage_rows(tune_p, embed)
    tried = {}
    best: tuple[float, float, Head] | None = None
    for c in C_GRID:
        head = fit_head(*train_xy, c)
        ap = average_precision(head.probabilities(tune_xy[0]), tune_xy[1])
        tried[str(c)] = round(ap, 4)
        if best is None or ap > best[0]:
            best = (ap, c, head)
    assert best is not None
    head = platt(best[2], *tune_xy)
    clean = passages["tune"]["clean_emails"] + passages["tune"]["clean_pages"]
    clean_scores = {"clean": _passage_scores(head, clean, embed)}
    clean_rules = {"clean": np.array([match_rule(p.text) is not None for p in clean])}
    threshold = lowest_threshold(clean_scores, clean_rules, {"clean": PASSAGE_FPR})
    return head, threshold, {"c": best[1], "tune_average_precision_by_c": tried}


if __name__ == "__main__":
    main()
