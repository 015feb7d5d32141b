"""The optional rerank stage: a cross-encoder scores (query, passage) pairs for the top candidates.

No PyPI package ships cross-encoder weights, so Keel has none by default: an operator points
`KEEL_KNOWLEDGE__RETRIEVAL__RERANKER_PATH` at a local sentence-transformers cross-encoder folder
(for example ms-marco-MiniLM-L-6-v2) and requests may then ask for `rerank: true`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Protocol

from keel.errors import ServiceUnavailableError


class Reranker(Protocol):
    def score(self, query: str, passages: list[str]) -> list[float]:
        """One relevance score per passage; higher is more relevant."""
        ...


class CrossEncoderReranker:
    def __init__(self, model_path: Path) -> None:
        self.model_path = model_path
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                if not self.model_path.is_dir():
                    raise ServiceUnavailableError(f"Reranker folder not found: {self.model_path}")
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(str(self.model_path), device="cpu", local_files_only=True)
            return self._model

    def score(self, query: str, passages: list[str]) -> list[float]:
        model = self._load()
        with self._lock:
            scores = model.predict([(query, passage) for passage in passages], show_progress_bar=False)
        return [float(s) for s in scores]
