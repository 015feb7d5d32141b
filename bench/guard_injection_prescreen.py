"""Fits the injection guard's lexical prescreen (`keel.guard.injection_prescreen`) on the train part of
`bench/guard_injection_data.py`'s split (with `bench/guard_injection_variants.py`'s generated texts, as the
shipped classifier) and sets its cut; writes `src/keel/guard/data/
injection_prescreen.npz` and `bench/results/guard_injection_prescreen.md`. The test part is never read.

    .venv/bin/python -m bench.guard_injection_prescreen

The cut: the lowest score an attack got while it was not in the fitted data (out-of-fold over the train
part's attacks, five folds, and the tune part's attacks under the model fitted on all of train), times
MARGIN. Below it the classifier is not asked; the tune part's figures say what share of each set that
spares and that no tune attack is cleared. What the cascade does on held-out data is measured by
`bench/guard_injection.py`, whose shipped-model rows run it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold

from bench.guard_injection_data import Labeled, _banking, message_sets, split_record
from bench.guard_injection_variants import variant_sets
from bench.harness import write_results
from keel.guard.injection_prescreen import BITS, LexicalPrescreen, term_frequencies

OUT = Path("src/keel/guard/data/injection_prescreen.npz")
C = 1.0
MARGIN = 0.75
FOLDS = 5


def _counts(texts: Sequence[str]) -> sparse.csr_matrix:
    terms = [term_frequencies(text) for text in texts]
    rows = np.repeat(np.arange(len(texts)), [len(index) for index, _ in terms])
    cols = np.concatenate([index for index, _ in terms]) if terms else np.empty(0, np.int64)
    values = np.concatenate([tf for _, tf in terms]) if terms else np.empty(0)
    return sparse.csr_matrix((values, (rows, cols)), shape=(len(texts), 1 << BITS))


def fit(texts: Sequence[str], labels: Sequence[int], cut: float = 0.0) -> LexicalPrescreen:
    tf = _counts(texts)
    df = np.bincount(tf.indices, minlength=1 << BITS)
    idf = (np.log((1 + len(texts)) / (1 + df)) + 1.0).astype(np.float32)
    rows = tf.multiply(idf[None, :]).tocsr()
    norms = np.sqrt(np.asarray(rows.multiply(rows).sum(axis=1)).ravel())
    rows = sparse.diags(1.0 / np.where(norms == 0, 1.0, norms)) @ rows
    model = LogisticRegression(C=C, max_iter=5000, class_weight="balanced").fit(rows, np.asarray(labels))
    weights = model.coef_[0].astype(np.float32)
    weights[df == 0] = 0.0
    meta = {"C": C, "fitted_on": len(texts), "split": split_record()}
    return LexicalPrescreen(idf, weights, float(model.intercept_[0]), cut, meta)


def lowest_unseen_attack(train: list[Labeled], tune: list[Labeled]) -> tuple[float, float, float]:
    """The lowest score of an attack not in the fitted data: out-of-fold on train, then on tune."""
    texts = [row.text for row in train]
    labels = np.asarray([row.label for row in train])
    out_of_fold = []
    for fitted, held in StratifiedKFold(FOLDS, shuffle=True, random_state=0).split(texts, labels):
        model = fit([texts[i] for i in fitted], labels[fitted].tolist())
        out_of_fold += [model.score(texts[i]) for i in held if labels[i] == 1]
    full = fit(texts, labels.tolist())
    on_tune = [full.score(row.text) for row in tune if row.label == 1]
    return min(min(out_of_fold), min(on_tune)), min(out_of_fold), min(on_tune)


def main() -> None:
    started = time.perf_counter()
    # The shipped classifier's training data: the split's message sets and the generated variants.
    sets = message_sets()
    variants = variant_sets(_banking(500))
    for part in ("train", "tune"):
        sets.sets[part].update(variants[part])
    train, tune = sets.all("train"), sets.all("tune")
    lowest, lowest_train, lowest_tune = lowest_unseen_attack(train, tune)
    prescreen = fit([r.text for r in train], [r.label for r in train], cut=lowest * MARGIN)
    prescreen.meta.update({"margin": MARGIN, "lowest_unseen_attack": lowest})
    prescreen.save(OUT)
    shipped = LexicalPrescreen.load(OUT)
    cleared: dict[str, dict[str, float]] = {}
    for name, rows in sets.sets["tune"].items():
        flags = [shipped.clears(row.text)[0] for row in rows]
        attacks = [f for f, row in zip(flags, rows, strict=True) if row.label == 1]
        benign = [f for f, row in zip(flags, rows, strict=True) if row.label == 0]
        cleared[name] = {
            "n": len(rows),
            "benign_cleared": float(np.mean(benign)) if benign else math.nan,
            "attacks_cleared": float(np.mean(attacks)) if attacks else math.nan,
        }
    texts = [row.text for row in tune]
    timer = time.perf_counter()
    for text in texts:
        shipped.score(text)
    per_text_ms = (time.perf_counter() - timer) / len(texts) * 1000
    data = {
        "cut": shipped.cut,
        "margin": MARGIN,
        "lowest_unseen_attack": {"all": lowest, "train_out_of_fold": lowest_train, "tune": lowest_tune},
        "tune": cleared,
        "score_ms_per_text": per_text_ms,
        "seconds": time.perf_counter() - started,
    }
    write_results("guard_injection_prescreen", data, _table(data))


def _share(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1%}"


def _table(data: dict[str, object]) -> str:
    lowest = data["lowest_unseen_attack"]
    assert isinstance(lowest, dict)
    lines = [
        f"Cut {data['cut']:.4f} = {MARGIN} x the lowest score of an attack the prescreen had not been fitted "
        f"on ({lowest['all']:.4f}; train out-of-fold {lowest['train_out_of_fold']:.4f}, tune "
        f"{lowest['tune']:.4f}). Scoring: {data['score_ms_per_text']:.3f} ms per tune message.",
        "",
        "Tune part: share of each set the prescreen clears (the classifier is then not asked).",
        "",
        "| set | n | benign cleared | attacks cleared |",
        "| --- | ---: | ---: | ---: |",
    ]
    tune = data["tune"]
    assert isinstance(tune, dict)
    for name, row in tune.items():
        lines.append(
            f"| {name} | {row['n']} | {_share(row['benign_cleared'])} | {_share(row['attacks_cleared'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
