"""The injection classifier fitted at first use: on the shipped examples (and an operator's extra ones)
when the shipped model was not fitted on this embedder, or extra examples were given. It is cached as
plain arrays under a name that covers the examples, the embedder and how it is fitted."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from keel.guard.injection_model import (
    Head,
    InjectionModel,
    Thresholds,
    candidate_rows,
    fit_head,
    message_candidates,
)
from keel.guard.injection_plan import _plan
from keel.llm_types import EmbeddingProvider

EXAMPLES = resources.files("keel.guard") / "data" / "injection_examples.jsonl"
_C = 4.0  # inverse regularisation of the fallback classifier; part of its cache key


def load_examples(extra: Path | None = None) -> list[tuple[str, int]]:
    """The shipped examples, plus those in `extra` (JSON lines of `{text, label}`, 1 = injection)."""
    lines = EXAMPLES.read_text(encoding="utf-8").splitlines()
    if extra is not None:
        lines += extra.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [(str(row["text"]), int(row["label"])) for row in rows]


def fallback_path(cache_dir: Path, embedder: EmbeddingProvider, extra: Path | None) -> Path:
    payload = json.dumps([load_examples(extra), embedder.model_id, _C, "features-v3"])
    return cache_dir / f"injection-{hashlib.sha256(payload.encode()).hexdigest()[:16]}.npz"


def fallback_model(
    embedder: EmbeddingProvider, extra: Path | None, *, sentences: bool, path: Path | None
) -> InjectionModel:
    """The cached fallback classifier at `path`, else fitted now (one embedding pass) and cached there."""
    if path is not None and path.is_file():
        return InjectionModel.load(path)
    examples = load_examples(extra)
    plans = [_plan(text, sentences) for text, _ in examples]
    vectors = embedder.embed([piece for plan in plans for piece in plan.pieces]).astype(np.float64)
    # The message head reads the override features too; the passage head the rows it always read
    # (a passage's rows are scored without windows, but fitted on the examples' windows as before).
    rows: dict[str, list[npt.NDArray[np.float64]]] = {"message": [], "passage": []}
    labels: list[int] = []
    offset = 0
    for (_, label), plan in zip(examples, plans, strict=True):
        own = vectors[offset : offset + len(plan.pieces)]
        offset += len(plan.pieces)
        message = message_candidates(own, plan.pieces, plan.scored, plan.windows)
        rows["message"].append(message.rows)
        rows["passage"].append(candidate_rows(own, plan.pieces, plan.scored, plan.windows).rows)
        labels += [label] * len(message.rows)
    heads: dict[str, Head] = {
        name: fit_head(np.vstack(stacked), np.asarray(labels), _C) for name, stacked in rows.items()
    }
    model = InjectionModel(
        heads["message"], heads["passage"], Thresholds(), meta={"fitted_on": "shipped examples"}
    )
    if path is not None:
        model.save(path)
    return model
