"""Intent classification on the local embeddings: a logistic regression trained on the examples Keel
ships (`data/intents.jsonl`), with an out-of-scope class. Trained once and kept in the data directory as
plain arrays, keyed by the examples and the embedding model, so later starts load it in milliseconds."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from keel.gateway.providers.base import EmbeddingProvider

EXAMPLES = resources.files("keel.copilot") / "data" / "intents.jsonl"


@dataclass(frozen=True)
class IntentPrediction:
    intent: str
    probability: float


def load_examples() -> list[dict[str, str]]:
    return [json.loads(line) for line in EXAMPLES.read_text().splitlines() if line.strip()]


@dataclass(frozen=True)
class _LinearModel:
    """A fitted multinomial logistic regression, kept as plain arrays (no pickle on disk)."""

    classes: npt.NDArray[np.str_]
    weights: npt.NDArray[np.float64]
    bias: npt.NDArray[np.float64]

    def probabilities(self, vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        logits = self.weights @ vector + self.bias
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()  # type: ignore[no-any-return]


class IntentClassifier:
    def __init__(self, embedder: EmbeddingProvider, cache_dir: Path) -> None:
        self._embedder = embedder
        self._cache_dir = cache_dir
        self._model: _LinearModel | None = None
        self._lock = threading.Lock()

    def _fingerprint(self, examples: list[dict[str, str]]) -> str:
        payload = json.dumps([examples, self._embedder.model_id], sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def warm_up(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            examples = load_examples()
            path = self._cache_dir / f"intents-{self._fingerprint(examples)}.npz"
            if path.is_file():
                with np.load(path) as saved:
                    self._model = _LinearModel(saved["classes"], saved["weights"], saved["bias"])
                return
            from sklearn.linear_model import LogisticRegression

            vectors = self._embedder.embed([e["text"] for e in examples])
            fitted = LogisticRegression(max_iter=2000, C=8.0).fit(vectors, [e["intent"] for e in examples])
            model = _LinearModel(np.asarray(fitted.classes_, dtype=str), fitted.coef_, fitted.intercept_)
            self._cache_dir.mkdir(parents=True, exist_ok=True)
            np.savez(path, classes=model.classes, weights=model.weights, bias=model.bias)
            self._model = model

    def classify(self, text: str) -> IntentPrediction:
        self.warm_up()
        assert self._model is not None
        probabilities = self._model.probabilities(self._embedder.embed([text])[0])
        best = int(np.argmax(probabilities))
        return IntentPrediction(str(self._model.classes[best]), float(probabilities[best]))
