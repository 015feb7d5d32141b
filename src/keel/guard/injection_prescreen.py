"""A lexical first look at a user's message, so that the injection classifier's embedding (about 5 ms of
CPU for a short message: MiniLM is compute-bound, ~0.3 GFLOP) is spent only where it can matter.

A logistic regression over hashed word and character n-grams, fitted on the training part of the same
data as the shipped classifier (`bench/guard_injection_prescreen.py`). Its cut is set on the tune part
below the lowest score any attack there got (times a margin), so it only clears text that looks less
like an injection than every attack it was tuned on; anything else goes on to the classifier. It never
flags: a message it does not clear is decided by the classifier exactly as before.

Features are computed here, not by scikit-learn's vectorisers, because those cost ~1.3 ms per text in
call overhead; the hashing is stable across processes (CRC-32, not Python's salted `hash`).
"""

from __future__ import annotations

import itertools
import json
import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

SHIPPED_PRESCREEN = resources.files("keel.guard") / "data" / "injection_prescreen.npz"
BITS = 20
_MASK = (1 << BITS) - 1
_WORD = re.compile(r"\w+")
# Longer texts go to the classifier uncleared: scoring runs on the event loop (~0.13 ms for a short
# message) and must stay bounded there.
PRESCREEN_MAX_CHARS = 1000


def features(text: str) -> Counter[int]:
    """Hashed counts: words and word pairs, and each word's character 2- to 5-grams with its edges."""
    words = _WORD.findall(text.lower())
    grams: list[str] = [f"w {w}" for w in words]
    grams += [f"b {a} {b}" for a, b in itertools.pairwise(words)]
    for word in words:
        padded = f" {word} "
        for size in range(2, 6):
            grams += [f"c {padded[i : i + size]}" for i in range(len(padded) - size + 1)]
    return Counter(zlib.crc32(gram.encode()) & _MASK for gram in grams)


def term_frequencies(text: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The text's hashed features and their sublinear frequencies (1 + ln count), as fitted and scored."""
    counts = features(text)
    index = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    return index, 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))


@dataclass(frozen=True)
class LexicalPrescreen:
    """`idf` and `weights` are indexed by hashed feature; the cut is on the probability scale."""

    idf: npt.NDArray[np.float32]
    weights: npt.NDArray[np.float32]
    bias: float
    cut: float
    meta: dict[str, Any]

    def score(self, text: str) -> float:
        index, tf = term_frequencies(text)
        if not len(index):
            return 0.0
        values = tf * self.idf[index]
        norm = float(np.sqrt(values @ values)) or 1.0
        logit = float(values @ self.weights[index]) / norm + self.bias
        return 1.0 / (1.0 + math.exp(-logit))

    def clears(self, text: str, max_chars: int = PRESCREEN_MAX_CHARS) -> tuple[bool, float]:
        """Whether the text looks less like an injection than the cut allows, and its score (1.0 for a
        text longer than `max_chars`, which is not scored)."""
        if len(text) > max_chars:
            return False, 1.0
        score = self.score(text)
        return score < self.cut, score

    def save(self, path: Path) -> None:
        seen = np.flatnonzero(self.weights)
        np.savez_compressed(
            path,
            seen=seen.astype(np.int32),
            idf=self.idf[seen],
            weights=self.weights[seen],
            unseen_idf=np.float32(self.idf.max()),
            bias=np.float64(self.bias),
            cut=np.float64(self.cut),
            meta=np.array(json.dumps(self.meta)),
        )

    @classmethod
    def load(cls, path: Path | Any) -> LexicalPrescreen:
        with np.load(path) as data:  # `path` may be a packaged resource
            seen = data["seen"]
            idf = np.full(1 << BITS, float(data["unseen_idf"]), dtype=np.float32)
            idf[seen] = data["idf"]
            weights = np.zeros(1 << BITS, dtype=np.float32)
            weights[seen] = data["weights"]
            return cls(idf, weights, float(data["bias"]), float(data["cut"]), json.loads(str(data["meta"])))


def shipped_prescreen() -> LexicalPrescreen | None:
    return LexicalPrescreen.load(SHIPPED_PRESCREEN) if SHIPPED_PRESCREEN.is_file() else None
