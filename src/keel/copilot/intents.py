"""Intent classification on the local embeddings: a logistic regression trained on the examples Keel
ships (`data/intents.jsonl`, plus `copilot.intent_examples` when set), with an out-of-scope class.
Trained once and kept in the data directory as plain arrays, keyed by the examples and the embedding
model, so later starts load it in milliseconds."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt

from keel.errors import ServiceUnavailableError
from keel.gateway.providers.base import EmbeddingProvider

EXAMPLES = resources.files("keel.copilot") / "data" / "intents.jsonl"


@dataclass(frozen=True)
class IntentPrediction:
    intent: str
    probability: float


def load_examples(extra: Path | None = None) -> list[dict[str, str]]:
    """The shipped examples, plus an operator's file of the same shape (one `{"text", "intent"}` JSON
    object per line): new intents for another business, or more phrasings of the shipped ones."""
    examples = _parse(EXAMPLES.read_text(encoding="utf-8"), "the shipped intent examples")
    if extra is not None:
        try:
            lines = extra.read_text(encoding="utf-8")
        except OSError as exc:
            raise ServiceUnavailableError(
                f"Cannot read the intent examples file {extra}: {exc.strerror}."
            ) from exc
        examples += _parse(lines, str(extra))
    return examples


def _parse(lines: str, where: str) -> list[dict[str, str]]:
    examples = []
    for number, line in enumerate(lines.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ServiceUnavailableError(f"{where}, line {number}: not JSON ({exc.msg}).") from exc
        if not (
            isinstance(row, dict) and isinstance(row.get("text"), str) and isinstance(row.get("intent"), str)
        ):
            raise ServiceUnavailableError(
                f'{where}, line {number}: expected {{"text": "...", "intent": "..."}}.'
            )
        examples.append({"text": row["text"], "intent": row["intent"]})
    return examples


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
    def __init__(
        self, embedder: EmbeddingProvider, cache_dir: Path, extra_examples: Path | None = None
    ) -> None:
        self._embedder = embedder
        self._cache_dir = cache_dir
        self._extra_examples = extra_examples
        self._model: _LinearModel | None = None
        self._lock = threading.Lock()

    def _fingerprint(self, examples: list[dict[str, str]]) -> str:
        payload = json.dumps([examples, self._embedder.model_id], sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def warm_up(self) -> None:
        with self._lock:
            if self._model is not None:
                return
            examples = load_examples(self._extra_examples)
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
