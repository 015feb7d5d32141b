"""Names what a passage verdict depends on besides the passage's text, as a digest that stays the same
across processes and restarts: the rules, the passage head and its threshold, the embedding model and
the way a verdict is computed. A verdict kept under one state is never read under another."""

from __future__ import annotations

import hashlib
import json

from keel.guard.injection_model import ROW_FEATURES, InjectionModel
from keel.guard.injection_rules import rules_digest

# Raised whenever the computation of a verdict changes in a way the other parts do not name (how a
# passage is cut into sentences, how its spans are widened): every kept verdict is then stale.
PASSAGE_VERDICT_VERSION = 1


def passage_state(
    rules_enabled: bool, threshold: float | None, model: InjectionModel | None, embedder: str | None
) -> str:
    """`threshold` is the setting (None: the model's); `model` None: rules only."""
    head = None
    if model is not None:
        threshold = model.thresholds.passage if threshold is None else threshold
        passage = model.passage
        digest = hashlib.sha256(passage.weights.astype("<f8").tobytes())
        digest.update(json.dumps([passage.bias, list(passage.platt)]).encode())
        head = digest.hexdigest()
    payload = {
        "version": PASSAGE_VERDICT_VERSION,
        "rules": rules_digest() if rules_enabled else None,
        "head": head,
        "threshold": threshold if model is not None else None,
        "features": list(ROW_FEATURES) if model is not None else None,
        "embedder": embedder if model is not None else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
